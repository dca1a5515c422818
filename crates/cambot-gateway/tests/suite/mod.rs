mod ipc_auth;
