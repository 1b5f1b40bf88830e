//! Sub-workflows named by reference (`file:`, `name:`) replaced by the
//! workflows they name, at every depth, so that what runs (and what a run
//! stores) holds each child it may start.

use crate::workflow::{SubWorkflow, Workflow};

/// Finds the workflow a reference names, from where its parent came from
/// (`C`: the parent file's directory, for instance). Returns an identity for
/// cycle detection (a canonical path, a name and version), the workflow, and
/// where it came from.
pub type Find<'f, C> = dyn FnMut(&SubWorkflow, &C) -> Result<(String, Workflow, C), String> + 'f;

/// Replaces every `file` and `name` sub-workflow of `wf` (and of its children)
/// by the workflow `find` returns. `top` is the identity of `wf` itself. A
/// chain of references that comes back to a workflow above it, or nests
/// deeper than `max_depth`, is an error naming the chain.
pub fn resolve_children<C>(
    wf: &mut Workflow,
    top: &str,
    from: &C,
    max_depth: usize,
    find: &mut Find<'_, C>,
) -> Result<(), String> {
    let mut chain = vec![top.to_string()];
    walk(wf, from, max_depth, find, &mut chain)
}

fn walk<C>(
    wf: &mut Workflow,
    from: &C,
    max_depth: usize,
    find: &mut Find<'_, C>,
    chain: &mut Vec<String>,
) -> Result<(), String> {
    for task in &mut wf.tasks {
        let id = task.id.clone();
        for (_, sub) in task.sub_workflows_mut() {
            resolve_one(&id, sub, from, max_depth, find, chain)?;
        }
    }
    Ok(())
}

/// One sub-workflow of task `id`: an inline one's children resolved, a
/// reference replaced by what it names.
fn resolve_one<C>(
    id: &str,
    sub: &mut SubWorkflow,
    from: &C,
    max_depth: usize,
    find: &mut Find<'_, C>,
    chain: &mut Vec<String>,
) -> Result<(), String> {
    let place = chain.last().cloned().unwrap_or_default();
    let at = |e: String| format!("task `{id}` of {place}: {e}");
    if let SubWorkflow::Inline(child) = sub {
        return walk(child, from, max_depth, find, chain);
    }
    let (identity, mut child, child_from) = find(sub, from).map_err(at)?;
    if chain.contains(&identity) {
        let mut path = chain.clone();
        path.push(identity);
        return Err(at(format!(
            "sub-workflows form a cycle: {}",
            path.join(" → ")
        )));
    }
    if chain.len() >= max_depth {
        return Err(at(format!(
            "sub-workflows nest deeper than {max_depth} levels: {} → {identity}",
            chain.join(" → ")
        )));
    }
    chain.push(identity);
    walk(&mut child, &child_from, max_depth, find, chain)?;
    chain.pop();
    *sub = SubWorkflow::Inline(Box::new(child));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Task;

    fn calling(name: &str) -> Workflow {
        let mut t = Task::new("call", &[]);
        t.workflow = Some(Box::new(SubWorkflow::Catalog {
            name: name.into(),
            version: None,
        }));
        Workflow {
            name: Some(name.into()),
            tasks: vec![t],
            ..Workflow::default()
        }
    }

    fn leaf() -> Workflow {
        Workflow {
            name: Some("leaf".into()),
            tasks: vec![Task::new("x", &[])],
            ..Workflow::default()
        }
    }

    #[test]
    fn references_are_replaced_at_every_depth() {
        // top → a → leaf
        let mut wf = calling("a");
        let mut find = |sub: &SubWorkflow, _: &()| match sub {
            SubWorkflow::Catalog { name, .. } if name == "a" => {
                Ok(("a".to_string(), calling("leaf"), ()))
            }
            SubWorkflow::Catalog { name, .. } if name == "leaf" => {
                Ok(("leaf".to_string(), leaf(), ()))
            }
            other => Err(format!("no {}", other.describe())),
        };
        resolve_children(&mut wf, "top", &(), 8, &mut find).unwrap();
        let Some(SubWorkflow::Inline(a)) = wf.tasks[0].workflow.as_deref() else {
            panic!("not inline");
        };
        let Some(SubWorkflow::Inline(l)) = a.tasks[0].workflow.as_deref() else {
            panic!("not inline");
        };
        assert_eq!(l.name.as_deref(), Some("leaf"));
    }

    #[test]
    fn a_cycle_and_a_chain_too_deep_are_errors_that_name_the_chain() {
        let mut find = |sub: &SubWorkflow, _: &()| match sub {
            SubWorkflow::Catalog { name, .. } if name == "a" => {
                Ok(("a".to_string(), calling("b"), ()))
            }
            SubWorkflow::Catalog { name, .. } if name == "b" => {
                Ok(("b".to_string(), calling("a"), ()))
            }
            other => Err(format!("no {}", other.describe())),
        };
        let e = resolve_children(&mut calling("a"), "top", &(), 8, &mut find).unwrap_err();
        assert_eq!(
            e,
            "task `call` of b: sub-workflows form a cycle: top → a → b → a"
        );
        let e = resolve_children(&mut calling("a"), "top", &(), 2, &mut find).unwrap_err();
        assert!(
            e.ends_with("sub-workflows nest deeper than 2 levels: top → a → b"),
            "{e}"
        );
        let e = resolve_children(&mut calling("nope"), "top", &(), 8, &mut find).unwrap_err();
        assert_eq!(e, "task `call` of top: no workflow `nope`");
    }
}
