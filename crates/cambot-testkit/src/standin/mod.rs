//! Scripted stand-ins for remote model APIs.
