mod e2e;
mod protocol_doc;
mod self_protection;
mod ssrf;
mod support;
