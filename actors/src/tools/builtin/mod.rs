//! Built-in tools (SPEC §6), each in its own module. File tools are confined to the working
//! directory: a path that leaves it, also through `..` or a symbolic link, is refused.

mod agents;
mod bash;
mod capture;
mod fetch;
mod files;
mod man;
mod math;
mod memory;
mod notify;
mod process;
mod search;
mod web_search;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub use agents::{AGENT_TOOLS, AgentKind, AgentKit, SubAgent, TASK_TOOLS};
pub use bash::Bash;
pub use fetch::{Resolve, SystemResolver, WebFetch, html_to_text, is_public};
pub use files::{EditFile, ReadFile, ReadSet, WriteFile};
pub use man::Man;
pub use math::Math;
pub use memory::{Forget, Recall, Remember};
pub use notify::{ChannelAuth, Notify};
pub use process::{MAX_TASKS, PidCage};
pub use search::Search;
pub use web_search::{WebSearch, format_results};

use super::ToolRegistry;
use crate::config::TurnstoneConfig;
use crate::provider::ModelRouter;
use crate::storage::Store;

/// The built-in tools: with a database the memory tools, with a model router the sub-agents
/// (`task`, `plan`), which get every other tool but themselves. `extra` tools (MCP) are
/// registered too and are also available to the sub-agents.
pub fn builtin_tools(
    store: Option<Store>,
    config: Arc<TurnstoneConfig>,
    router: Option<ModelRouter>,
    extra: Vec<Arc<dyn super::Tool>>,
) -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    let read = ReadSet::default();
    registry.register(Arc::new(ReadFile::new(read.clone())));
    registry.register(Arc::new(WriteFile::new(read.clone())));
    registry.register(Arc::new(EditFile::new(read)));
    registry.register(Arc::new(Bash));
    registry.register(Arc::new(Search));
    registry.register(Arc::new(Man));
    registry.register(Arc::new(WebFetch::new(None)));
    registry.register(Arc::new(Math));
    registry.register(Arc::new(WebSearch::new(
        config.api.tavily_key.clone(),
        &config.api.tavily_url,
    )));
    let channel_auth = ChannelAuth {
        token: std::env::var("TURNSTONE_CHANNEL_AUTH_TOKEN").ok(),
        jwt_secret: config.auth.jwt_secret.clone(),
    };
    registry.register(Arc::new(Notify::new(store.clone(), channel_auth)));
    if let Some(store) = store {
        registry.register(Arc::new(Remember::new(store.clone())));
        registry.register(Arc::new(Recall::new(store.clone())));
        registry.register(Arc::new(Forget::new(store)));
    }
    for tool in extra {
        registry.register(tool);
    }
    if let Some(router) = router {
        let kit = AgentKit {
            router,
            tools: registry.clone(),
            config,
        };
        registry.register(Arc::new(WebFetch::new(Some(kit.clone()))));
        let kit = AgentKit {
            tools: registry.clone(),
            ..kit
        };
        registry.register(Arc::new(SubAgent::new(AgentKind::Task, kit.clone())));
        registry.register(Arc::new(SubAgent::new(AgentKind::Plan, kit)));
    }
    registry
}

/// Resolves `path` against `workdir` and refuses anything outside it (after following
/// symbolic links of the existing part of the path).
pub fn confine(workdir: &Path, path: &str) -> Result<PathBuf, String> {
    if path.trim().is_empty() {
        return Err("path is empty".into());
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let root = workdir
        .canonicalize()
        .map_err(|e| format!("working directory {}: {e}", workdir.display()))?;
    let joined = root.join(path);
    // Canonicalise the longest existing ancestor (following links), then re-append the rest.
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .map_err(|e| format!("{path}: {e}"))?;
    for part in rest.iter().rev() {
        resolved.push(part);
    }
    // `..` in the part that does not exist yet
    let mut normal = PathBuf::new();
    for c in resolved.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    if !normal.starts_with(&root) {
        return Err(format!(
            "{path} is outside the working directory {}",
            root.display()
        ));
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined_to_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        assert_eq!(
            confine(&root, "sub/new.txt").unwrap(),
            root.join("sub/new.txt")
        );
        assert_eq!(
            confine(&root, "./sub/../a.txt").unwrap(),
            root.join("a.txt")
        );
        assert!(
            confine(&root, "../escape.txt")
                .unwrap_err()
                .contains("outside the working directory")
        );
        assert!(
            confine(&root, "/etc/passwd")
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            confine(&root, "sub/../../x")
                .unwrap_err()
                .contains("outside")
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
            assert!(
                confine(&root, "link/passwd")
                    .unwrap_err()
                    .contains("outside"),
                "symlink out"
            );
        }
        assert!(confine(&root, "").is_err());
    }
}
