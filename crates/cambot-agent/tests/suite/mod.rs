mod router;
mod support;
