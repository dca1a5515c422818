mod e2e;
mod protocol_doc;
mod read_document;
mod self_protection;
mod ssrf;
mod support;
