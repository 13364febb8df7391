mod architecture;
mod cli;
