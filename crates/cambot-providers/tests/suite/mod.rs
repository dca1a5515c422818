mod errors;
mod gateway;
mod local_model;
mod require;
mod streaming;
mod support;
