mod backends;
mod gateway;
mod lifecycle;
mod mcp;
mod mcp_apply;
mod mcp_protocol;
mod security;
mod tenancy;
