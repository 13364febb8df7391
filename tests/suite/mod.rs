mod agent;
mod workspace;
