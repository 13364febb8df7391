mod agent;
mod cli;
mod docker_e2e;
mod docker_hardening;
mod docker_restart;
mod events;
mod image;
mod workspace;
