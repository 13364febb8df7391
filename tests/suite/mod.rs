mod agent;
mod events;
mod workspace;
