//! (in progress)

#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {}

pub async fn main(_a: ControllerArgs) -> Result<(), String> {
    Err("not implemented yet".into())
}
