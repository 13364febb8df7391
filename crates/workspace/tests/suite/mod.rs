mod apply_host;
mod workspace;
