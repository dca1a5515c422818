mod crash;
mod router;
mod support;
