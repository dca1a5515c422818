mod errors;
mod gateway;
mod streaming;
mod support;
