//! (in progress)
// TEMP stub until the agent branch lands.
pub async fn main(_spec: Option<&std::path::Path>) -> Result<i32, String> {
    Err("agent not yet".into())
}
