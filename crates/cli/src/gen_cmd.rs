//! `baton gen workflow`: deterministic synthetic workflows.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use baton_model::generate::{self, Shape, Spec};

/// Flags of `baton gen`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// A synthetic workflow of a given shape and size.
    Workflow(WorkflowArgs),
}

#[derive(clap::Args)]
struct WorkflowArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// chain | fanout | layered | random | diamond | dense
    #[arg(long, default_value = "random")]
    shape: Shape,
    /// Dependencies per task (random: 2.5, layered: 2) or branching factor (fanout: star).
    #[arg(long)]
    degree: Option<f64>,
    /// Edge probability for `dense` (default 0.1).
    #[arg(long)]
    density: Option<f64>,
    /// Random seed: the same seed gives the same workflow.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write here instead of stdout (the format follows the extension unless --format is given).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// json | yaml
    #[arg(long)]
    format: Option<OutFormat>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    Json,
    Yaml,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let What::Workflow(a) = args.what;
    if a.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if a.degree.is_some_and(|d| !d.is_finite() || d < 0.0) {
        bail!("--degree must be a non-negative number");
    }
    if a.density.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        bail!("--density must be between 0 and 1");
    }
    let spec = Spec {
        tasks: a.tasks,
        shape: a.shape,
        degree: a.degree,
        density: a.density,
        seed: a.seed,
    };
    let wf = generate::workflow(&spec);
    let format = a.format.unwrap_or_else(|| match &a.out {
        Some(p) if p.extension().is_some_and(|e| e == "yaml" || e == "yml") => OutFormat::Yaml,
        _ => OutFormat::Json,
    });
    let text_or_write = |w: &mut dyn Write| -> anyhow::Result<()> {
        match format {
            OutFormat::Json => serde_json::to_writer(&mut *w, &wf)?,
            OutFormat::Yaml => w.write_all(serde_saphyr::to_string(&wf)?.as_bytes())?,
        }
        w.write_all(b"\n")?;
        Ok(())
    };
    match &a.out {
        Some(path) => {
            // Write to a temporary sibling and rename, so a failure never
            // leaves a partial file behind.
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut w = BufWriter::new(file);
            let written = text_or_write(&mut w).and_then(|()| Ok(w.flush()?));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("cannot write {}", path.display())));
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let edges: usize = wf.tasks.iter().map(|t| t.depends_on.len()).sum();
            eprintln!(
                "wrote {}: {} tasks, {edges} dependencies ({})",
                path.display(),
                wf.tasks.len(),
                match format {
                    OutFormat::Json => "JSON",
                    OutFormat::Yaml => "YAML",
                }
            );
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            text_or_write(&mut w)?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
