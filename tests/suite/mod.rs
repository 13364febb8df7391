mod agent;
mod docker_e2e;
mod events;
mod workspace;
