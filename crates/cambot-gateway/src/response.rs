//! The one shape of every non-2xx answer of a run's socket.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use cambot_protocol::ipc::IpcError;
use cambot_protocol::ipc::IpcErrorBody;

/// The error shape of every non-2xx answer.
pub(crate) fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = IpcError {
        error: IpcErrorBody {
            kind: kind.to_owned(),
            message: message.to_owned(),
        },
    };
    (status, axum::Json(body)).into_response()
}
