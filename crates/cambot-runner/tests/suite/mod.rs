mod e2e;
mod protocol_doc;
mod ssrf;
mod support;
