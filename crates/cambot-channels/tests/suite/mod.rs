mod cli_seed;
