mod e2e;
mod protocol_doc;
mod support;
