mod backends;
mod gateway;
mod mcp;
mod mcp_apply;
mod security;
mod tenancy;
