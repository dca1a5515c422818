mod ipc_auth;
mod ipc_world;
mod model_proxy;
mod proxy_world;
mod socket_limits;
mod tenant_ipc;
