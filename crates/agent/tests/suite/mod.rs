mod agent;
mod fetch;
