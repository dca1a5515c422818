//! Every ```json example in docs/PROTOCOL.md parses into the real protocol type its heading
//! names, so the document cannot drift from the code.
