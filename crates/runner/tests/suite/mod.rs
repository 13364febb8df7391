mod budget;
mod docker_e2e;
mod docker_hardening;
mod docker_restart;
mod egress;
mod environment;
mod image;
mod verify;
