mod bwrap_escape;
mod bwrap_limits;
mod common;
mod docker;
