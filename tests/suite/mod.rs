mod agent;
mod docker_e2e;
mod docker_hardening;
mod docker_restart;
mod events;
mod mcp;
mod workspace;
