//! The workbench's page and the rules routes it calls (CONTRACT §7, docs/REFERENCE.md §7):
//! the files listed, read and saved, and an edit validated. Trying an edit and backtesting it
//! are in `workbench_try.rs`. Every route needs a marketer or admin token ([`Marketer`]); the
//! work itself is `crate::workbench`'s, run off the async runtime where it touches files.

use super::caller::Marketer;
use super::error::{ApiError, ErrorBody, JsonBody};
use super::state::AppState;
use crate::email::RulesInForce;
use crate::rules::RuleSet;
use crate::store::Store;
use crate::workbench::{
    Diagnostic, EditError, Edits, FileEntry, Loaded, SaveError, SaveRequest, Saved, Workbench,
    load_edited,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes with plain paths; the file routes, whose path runs over several
/// segments, are in [`file_routes`] and documented by [`FileRoutesDoc`].
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_files))
        .routes(routes!(validate))
}

/// `GET` and `PUT /v1/rules/files/{path}`, `path` with its slashes (`rules/30-rules.toml`).
pub fn file_routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/v1/rules/files/{*path}",
        axum::routing::get(read_file).put(save_file),
    )
}

/// The file routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(read_file, save_file))]
pub struct FileRoutesDoc;

/// The page: served without a token, like `/station`; the token is typed into it.
pub async fn page() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' \
                 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                 form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(crate::workbench::PAGE),
    )
}

/// The page's editor bundle.
pub async fn editor_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        crate::workbench::EDITOR_JS,
    )
}

/// The rule files and templates, and the rules version in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileList {
    /// The version of the rules deciding now.
    pub rules_version: String,
    /// Whether the rules folder is a git work tree (saves are then committed).
    pub git: bool,
    pub files: Vec<FileEntry>,
}

/// Every rule file and template, with its entity tag.
#[utoipa::path(
    get,
    path = "/v1/rules/files",
    tag = "workbench",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The files", body = FileList),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
    )
)]
pub async fn list_files(
    _: Marketer,
    State(workbench): State<Arc<Workbench>>,
    State(env): State<Arc<dyn RulesInForce>>,
) -> Result<Json<FileList>, ApiError> {
    let folders = workbench.folders.clone();
    let (files, git) = blocking(move || {
        let git = crate::workbench::is_git_work_tree(&folders.rules);
        (folders.list(), git)
    })
    .await?;
    Ok(Json(FileList {
        rules_version: env.in_force().rules.version.clone(),
        git,
        files,
    }))
}

/// One file's text, with its entity tag (send it back in `If-Match` when saving).
#[utoipa::path(
    get,
    path = "/v1/rules/files/{path}",
    tag = "workbench",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "The file, relative to the folder that holds rules/ and templates/, slashes not encoded: rules/30-rules.toml")),
    responses(
        (status = 200, description = "The file's text", content_type = "text/plain", body = String,
         headers(("ETag" = String, description = "The file's entity tag"))),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
        (status = 404, description = "No such rule file or template", body = ErrorBody),
    )
)]
pub async fn read_file(
    _: Marketer,
    State(workbench): State<Arc<Workbench>>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let (on_disk, _) = workbench
        .folders
        .resolve(&path)
        .map_err(|e| ApiError::not_found(e.0))?;
    let bytes = match tokio::fs::read(&on_disk).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("there is no file {path}")));
        }
        Err(e) => return Err(ApiError::internal(format!("{path}: {e}"))),
    };
    let tag = crate::workbench::etag(&bytes);
    let mut response =
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SaveParams {
    /// `shadow`: set `mode = "shadow"` on each rule the edit changes ("save as shadow").
    pub mode: Option<String>,
}

/// Saves one rule file or template: it must validate with the rest of the folders (422 with
/// the findings), then `If-Match` must name the file on disk (412), then it is written
/// atomically, logged, and committed when the folder is a git work tree. The service reloads
/// the rules as for any change of the folder.
#[utoipa::path(
    put,
    path = "/v1/rules/files/{path}",
    tag = "workbench",
    security(("bearer" = [])),
    params(
        ("path" = String, Path, description = "The file, as in GET"),
        ("If-Match" = Option<String>, Header, description = "The entity tag read; absent saves over whatever is there"),
        ("X-Packwell-Message" = Option<String>, Header, description = "What the change is, for the operator log and the git commit (percent-encoded UTF-8)"),
        SaveParams,
    ),
    request_body(content = String, content_type = "text/plain", description = "The file's new text"),
    responses(
        (status = 200, description = "Saved", body = Saved),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
        (status = 404, description = "Not a rule file or template path", body = ErrorBody),
        (status = 412, description = "The file changed since it was read", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "The rules with this text do not validate, or the mode is unknown", body = ErrorBody),
        (status = 500, description = "The file could not be written; the log says why", body = ErrorBody),
    )
)]
pub async fn save_file(
    Marketer(caller): Marketer,
    State(workbench): State<Arc<Workbench>>,
    State(store): State<Arc<dyn Store>>,
    Path(path): Path<String>,
    Query(params): Query<SaveParams>,
    headers: HeaderMap,
    text: String,
) -> Result<Json<Saved>, ApiError> {
    let shadow = match params.mode.as_deref() {
        None | Some("live") => false,
        Some("shadow") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "mode: expected shadow, not {other:?}"
            )));
        }
    };
    let if_match = header_text(&headers, header::IF_MATCH.as_str());
    let message = header_text(&headers, "x-packwell-message")
        .map(|m| decode_message(&m))
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("{path}: saved in the workbench"));
    let author = caller.name.to_string();
    // The save and its log row run as a task of their own: a request given up halfway (a
    // timeout, a closed browser) neither releases the lock early nor leaves the row unwritten.
    let (p, wb) = (path.clone(), workbench.clone());
    let saving = tokio::spawn(async move {
        let (a, m) = (author.clone(), message.clone());
        let saved = blocking(move || {
            let _one_at_a_time = wb.saving.lock().unwrap_or_else(|e| e.into_inner());
            crate::workbench::save(
                &wb.folders,
                SaveRequest {
                    path: &p,
                    text,
                    if_match: if_match.as_deref(),
                    author: &a,
                    message: &m,
                    shadow,
                },
            )
        })
        .await;
        if let Ok(Ok(saved)) = &saved {
            let detail = serde_json::json!({
                "message": message,
                "etag": saved.etag,
                "rules_version": saved.rules_version,
                "commit": saved.commit,
                "shadowed": saved.shadowed,
            });
            // The file is saved (and committed) by now: a log row the store refuses is an
            // error in the service's log, not a failed save.
            if let Err(e) = store
                .log_operator(&author, "rules_save", &saved.path, &detail)
                .await
            {
                tracing::error!(path = saved.path, author, error = %e, "a workbench save was not written to operator_log");
            }
        }
        saved
    });
    let saved = saving
        .await
        .map_err(|e| ApiError::internal(format!("a workbench save stopped: {e}")))??
        .map_err(|e| match e {
            SaveError::NotAFile(e) => ApiError::not_found(e),
            SaveError::NotRules => {
                ApiError::invalid("mode=shadow applies to rule files (rules/NAME.toml) only")
            }
            SaveError::NotShadowed(ids) => ApiError::invalid(format!(
                "save as shadow could not set mode = \"shadow\" on {}: write each as a [[rule]] table",
                ids.join(", ")
            )),
            SaveError::Invalid(diagnostics) => ApiError::invalid_rules(diagnostics),
            SaveError::Changed(etag) => ApiError::changed(
                format!("{path} changed since it was read: someone saved it meanwhile; read it again and redo the edit"),
                etag,
            ),
            SaveError::Io(e) => ApiError::internal(e),
        })?;
    Ok(Json(saved))
}

/// The edited files, over the folders as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesRequest {
    /// Path (as in the file list) to the file's whole edited text.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub files: Edits,
}

/// Words a condition or a rule may name, for the editor's completion.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Completions {
    pub variables: Vec<String>,
    pub segments: Vec<String>,
    pub inserts: Vec<String>,
    pub templates: Vec<String>,
}

/// What `packwell validate` finds in the folders with the edit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub ok: bool,
    /// The version the rules would have once saved (null when they do not validate).
    pub rules_version: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// From the edited rules when they validate, else from the rules in force.
    pub completions: Completions,
}

/// Validates the folders with the edited files over them: the same findings as
/// `packwell validate`, at their file, line and column.
#[utoipa::path(
    post,
    path = "/v1/rules/validate",
    tag = "workbench",
    security(("bearer" = [])),
    request_body = FilesRequest,
    responses(
        (status = 200, description = "The findings (ok false when there are errors)", body = Validation),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 403, description = "A station's token", body = ErrorBody),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "A path is not a rule file or template, or the body is not understood", body = ErrorBody),
    )
)]
pub async fn validate(
    _: Marketer,
    State(workbench): State<Arc<Workbench>>,
    State(env): State<Arc<dyn RulesInForce>>,
    JsonBody(request): JsonBody<FilesRequest>,
) -> Result<Json<Validation>, ApiError> {
    let loaded = load(&workbench, request.files).await?;
    let in_force = env.in_force();
    let completions = completions(loaded.rules.as_ref().unwrap_or(&in_force.rules));
    Ok(Json(Validation {
        ok: loaded.is_valid(),
        rules_version: loaded.rules.as_ref().map(|r| r.version.clone()),
        diagnostics: loaded.diagnostics,
        completions,
    }))
}

fn completions(rules: &RuleSet) -> Completions {
    let mut templates = rules.templates.note_names();
    templates.extend(rules.templates.email_names());
    Completions {
        variables: crate::rules::expr::variable_paths(),
        segments: rules.segments.iter().map(|s| s.id.clone()).collect(),
        inserts: rules.inserts.iter().map(|i| i.id.clone()).collect(),
        templates,
    }
}

/// The folders with `edits` over them, loaded off the async runtime.
pub(super) async fn load(workbench: &Workbench, edits: Edits) -> Result<Loaded, ApiError> {
    let _turn = workbench
        .loading
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("the workbench's loads: {e}")))?;
    let folders = workbench.folders.clone();
    blocking(move || load_edited(&folders, &edits))
        .await?
        .map_err(|e| match e {
            EditError::NotAFile(e) => ApiError::invalid(e.0),
            EditError::Io(e) => ApiError::internal(e),
        })
}

/// Runs file and CPU work on the blocking threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("a workbench task stopped: {e}")))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A message header as sent: percent-encoded UTF-8 (browsers cannot send other bytes in a
/// header), or plain text; kept to one line.
fn decode_message(raw: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let line: String = decoded
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.trim().chars().take(500).collect()
}
