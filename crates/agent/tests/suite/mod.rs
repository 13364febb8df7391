mod agent;
mod confine;
mod fetch;
