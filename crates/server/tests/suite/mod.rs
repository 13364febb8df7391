mod backends;
mod gateway;
mod lifecycle;
mod mcp;
mod mcp_apply;
mod security;
mod tenancy;
