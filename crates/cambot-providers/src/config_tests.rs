// Unit tests land here with the dialect conformance work.
