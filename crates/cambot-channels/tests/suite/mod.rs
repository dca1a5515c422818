mod cli_seed;
mod web;
