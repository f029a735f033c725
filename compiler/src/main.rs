//! `journeyc`: the command line. Arguments → library calls → rendered output and an exit code.
//!
//! Exit codes: 0 clean, 1 errors found (or warnings with `--deny-warnings`), 2 usage or I/O error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use journey_compiler::render::{self, Format};
use journey_compiler::workspace::{self, FileSystem};
use journey_compiler::{Code, Severity};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "journeyc",
    version,
    about = "Compiler for the journey language",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check .journey files and report problems (directories: every *.journey below them)
    Check {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How to print diagnostics
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// Fail (exit 1) on warnings as well as errors
        #[arg(long)]
        deny_warnings: bool,
        /// When to colour human output
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
        /// Also print what the compiler proved: each journey's maximum lifetime, most sends per
        /// channel, and each step's earliest and latest time after entry
        #[arg(long)]
        summary: bool,
    },
    /// Check and compile .journey files into one bytecode file
    Build {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where to write the bytecode
        #[arg(short, long, default_value = "out.jbc")]
        output: PathBuf,
        /// Leave out the debug section (source lines)
        #[arg(long)]
        strip: bool,
        /// When to colour human output
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Rewrite .journey files in the canonical layout (comments kept)
    Fmt {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1 if there are any
        #[arg(long)]
        check: bool,
    },
    /// Draw journeys as a flow diagram (Mermaid or Graphviz dot)
    Graph {
        /// .journey files or directories (their imports are read too)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only this journey (default: every journey the files declare)
        #[arg(long)]
        journey: Option<String>,
        /// `mermaid` (renders on GitHub and in many editors) or `dot` (Graphviz)
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print a bytecode file as text: tables, then every block with offsets and source lines
    Disasm {
        /// A file written by `journeyc build`
        file: PathBuf,
    },
    /// Run events through the journeys and print what happens (LANGUAGE.md §9)
    Simulate {
        /// .journey files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Input messages, one JSON object a line (`track` and `identify`)
        #[arg(long)]
        events: PathBuf,
        /// Initial traits, as `identify` messages, applied before the events
        #[arg(long)]
        profiles: Option<PathBuf>,
        /// Stop at this RFC 3339 time (needed for `entry every` journeys to end)
        #[arg(long)]
        until: Option<String>,
        /// `human` (a timeline) or `jsonl` (one JSON object a line)
        #[arg(long, value_enum, default_value_t = TimelineFormat::Human)]
        format: TimelineFormat,
        /// Also print each journey's counts (entries, outcomes, conversion, steps, split arms)
        /// to standard error
        #[arg(long)]
        stats: bool,
    },
    /// Run the `test` blocks of .journey files on the VM
    Test {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Explain a diagnostic code (`E0101` or `syntax-error`); without one, list every code
    Explain { code: Option<String> },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Annotated source snippets for people
    Human,
    /// One JSON object a line
    Json,
    /// GitHub Actions workflow commands (annotations)
    Github,
    /// SARIF 2.1.0 for code-scanning tools
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum TimelineFormat {
    Human,
    Jsonl,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            paths,
            format,
            deny_warnings,
            color,
            summary,
        } => check(&paths, format, deny_warnings, color, summary),
        Command::Explain { code } => explain(code.as_deref()),
        Command::Build {
            paths,
            output,
            strip,
            color,
        } => build(&paths, &output, strip, color),
        Command::Disasm { file } => disasm(&file),
        Command::Fmt { paths, check } => fmt(&paths, check),
        Command::Graph {
            paths,
            journey,
            format,
        } => graph(&paths, journey.as_deref(), format),
        Command::Test { paths } => run_tests(&paths),
        Command::Simulate {
            paths,
            events,
            profiles,
            until,
            format,
            stats,
        } => simulate(
            &paths,
            &events,
            profiles.as_deref(),
            until.as_deref(),
            format,
            stats,
        ),
    }
}

fn check(
    paths: &[PathBuf],
    format: OutputFormat,
    deny_warnings: bool,
    color: Color,
    summary: bool,
) -> ExitCode {
    let files = match journey_files(paths) {
        Ok(files) => files,
        Err(code) => return code,
    };
    let analysis = journey_compiler::analyse(&FileSystem, &files);
    let loaded = &analysis.workspace;
    let format = match format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
        OutputFormat::Github => Format::Github,
        OutputFormat::Sarif => Format::Sarif,
    };
    let diagnostics = &analysis.diagnostics;
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let result = if format == Format::Human {
        let stderr = std::io::stderr();
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        let mut out = stderr.lock();
        render::render(format, &loaded.sources, diagnostics, &mut out, color).and_then(|()| {
            writeln!(
                out,
                "checked {} file{}: {errors} error{}, {warnings} warning{}",
                loaded.sources.len(),
                plural(loaded.sources.len()),
                plural(errors),
                plural(warnings)
            )
        })
    } else {
        let mut out = std::io::stdout().lock();
        render::render(format, &loaded.sources, diagnostics, &mut out, false)
    };
    if let Err(error) = result {
        eprintln!("journeyc: error: cannot write the report: {error}");
        return ExitCode::from(2);
    }
    if let (true, Some(program)) = (summary, &analysis.program) {
        print!("{}", render::summary(&loaded.sources, program));
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn build(paths: &[PathBuf], output: &std::path::Path, strip: bool, color: Color) -> ExitCode {
    let files = match journey_files(paths) {
        Ok(files) => files,
        Err(code) => return code,
    };
    let analysis = journey_compiler::analyse(&FileSystem, &files);
    let errors = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
    if !analysis.diagnostics.is_empty() {
        let stderr = std::io::stderr();
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        let _ = render::render(
            Format::Human,
            &analysis.workspace.sources,
            &analysis.diagnostics,
            &mut stderr.lock(),
            color,
        );
    }
    let Some(program) = analysis.program.as_ref().filter(|_| errors == 0) else {
        eprintln!(
            "journeyc: error: {errors} error{} found; nothing written",
            plural(errors)
        );
        return ExitCode::from(1);
    };
    let mut bytecode = journey_compiler::lower::lower(&analysis.workspace, program);
    if strip {
        bytecode.debug = None;
    }
    if let Err(error) = journey_runtime::bytecode::verify::verify(&bytecode) {
        eprintln!("journeyc: internal error: the compiled program fails verification: {error}");
        return ExitCode::from(2);
    }
    let bytes = journey_runtime::bytecode::write(&bytecode);
    if let Err(error) = std::fs::write(output, &bytes) {
        eprintln!(
            "journeyc: error: cannot write `{}`: {error}",
            output.display()
        );
        return ExitCode::from(2);
    }
    let steps: usize = bytecode.journeys.iter().map(|j| j.steps.len()).sum();
    let stripped = journey_runtime::bytecode::strip_debug(&bytecode).len();
    eprintln!(
        "wrote {}: {} journey{}, {steps} steps, {} bytes ({} without debug info, {} bytes of code; {:.1} bytes per step)",
        output.display(),
        bytecode.journeys.len(),
        plural(bytecode.journeys.len()),
        bytes.len(),
        stripped,
        bytecode.code.len(),
        stripped as f64 / steps.max(1) as f64
    );
    ExitCode::SUCCESS
}

fn run_tests(paths: &[PathBuf]) -> ExitCode {
    let (analysis, program) = match compile(paths) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let results = journey_compiler::testing::run_tests(&analysis.workspace, &program);
    let mut out = std::io::stdout().lock();
    let failed = results.iter().filter(|r| !r.passed()).count();
    for result in &results {
        let verdict = if result.passed() { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "test {}:{} \"{}\" ({}) ... {verdict}",
            result.file, result.line, result.name, result.journey
        );
        if !result.passed() {
            for failure in &result.failures {
                let _ = writeln!(out, "    ✗ {failure}");
            }
            let _ = writeln!(out, "    what happened:");
            if result.timeline.is_empty() {
                let _ = writeln!(out, "      (nothing)");
            }
            for line in &result.timeline {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Loads, checks and compiles; prints diagnostics; the verified program when there is no error.
fn compile(
    paths: &[PathBuf],
) -> Result<
    (
        journey_compiler::Analysis,
        journey_runtime::bytecode::Program,
    ),
    ExitCode,
> {
    let files = journey_files(paths)?;
    let analysis = journey_compiler::analyse(&FileSystem, &files);
    let errors = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let stderr = std::io::stderr();
        let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let _ = render::render(
            Format::Human,
            &analysis.workspace.sources,
            &analysis.diagnostics,
            &mut stderr.lock(),
            color,
        );
        eprintln!("journeyc: error: {errors} error{} found", plural(errors));
        return Err(ExitCode::from(1));
    }
    let Some(program) = analysis.program.as_ref() else {
        return Err(ExitCode::from(1));
    };
    let bytecode = journey_compiler::lower::lower(&analysis.workspace, program);
    if let Err(error) = journey_runtime::bytecode::verify::verify(&bytecode) {
        eprintln!("journeyc: internal error: the compiled program fails verification: {error}");
        return Err(ExitCode::from(2));
    }
    Ok((analysis, bytecode))
}

/// The `.journey` files of `paths` (directories walked), or exit code 2 with the reason.
fn journey_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ExitCode> {
    match workspace::expand_paths(paths) {
        Ok(files) if !files.is_empty() => Ok(files),
        Ok(_) => {
            eprintln!("journeyc: error: no .journey files found in the given paths");
            Err(ExitCode::from(2))
        }
        Err(message) => {
            eprintln!("journeyc: error: {message}");
            Err(ExitCode::from(2))
        }
    }
}

fn fmt(paths: &[PathBuf], check: bool) -> ExitCode {
    use journey_compiler::format::{format_text, FormatError};
    let files = match journey_files(paths) {
        Ok(files) => files,
        Err(code) => return code,
    };
    let (mut changed, mut failed) = (0usize, 0usize);
    for path in &files {
        let text = match std::fs::read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                eprintln!("journeyc: error: `{}` is not UTF-8", path.display());
                failed += 1;
                continue;
            }
            Err(error) => {
                eprintln!("journeyc: error: cannot read `{}`: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        let mut sources = journey_compiler::source::SourceMap::new();
        let file = sources.add(path.display().to_string(), path, text.clone());
        match format_text(file, &text) {
            Ok(formatted) if formatted == text => {}
            Ok(formatted) => {
                changed += 1;
                if check {
                    println!("{}", path.display());
                } else if let Err(error) = std::fs::write(path, formatted) {
                    eprintln!(
                        "journeyc: error: cannot write `{}`: {error}",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
            Err(FormatError::Syntax(diagnostics)) => {
                failed += 1;
                let stderr = std::io::stderr();
                let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
                let _ = render::render(
                    Format::Human,
                    &sources,
                    &diagnostics,
                    &mut stderr.lock(),
                    color,
                );
            }
            Err(FormatError::Unstable) => {
                failed += 1;
                eprintln!(
                    "journeyc: internal error: formatting `{}` would change its meaning; it was left as it is (please report it)",
                    path.display()
                );
            }
        }
    }
    let verb = if check {
        "would reformat"
    } else {
        "reformatted"
    };
    eprintln!(
        "{verb} {changed} of {} file{}{}",
        files.len(),
        plural(files.len()),
        if failed > 0 {
            format!("; {failed} could not be formatted")
        } else {
            String::new()
        }
    );
    if failed > 0 || (check && changed > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn graph(paths: &[PathBuf], journey: Option<&str>, format: GraphFormat) -> ExitCode {
    use journey_compiler::flow;
    let (analysis, _) = match compile(paths) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let Some(program) = analysis.program.as_ref() else {
        return ExitCode::from(1);
    };
    // The files named (directories expanded), not the ones they import.
    let roots: Vec<_> = workspace::expand_paths(paths)
        .unwrap_or_default()
        .iter()
        .filter_map(|path| analysis.workspace.sources.find_path(path))
        .collect();
    match flow::graphs(&analysis.workspace, program, &roots, journey) {
        Ok(graphs) => {
            let format = match format {
                GraphFormat::Mermaid => flow::GraphFormat::Mermaid,
                GraphFormat::Dot => flow::GraphFormat::Dot,
            };
            print!("{}", flow::render(&graphs, format));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("journeyc: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn simulate(
    paths: &[PathBuf],
    events: &std::path::Path,
    profiles: Option<&std::path::Path>,
    until: Option<&str>,
    format: TimelineFormat,
    stats: bool,
) -> ExitCode {
    use journey_compiler::simulate as sim;
    let program = match compile(paths) {
        Ok((_, program)) => program,
        Err(code) => return code,
    };
    let until = match until.map(|u| (u, journey_runtime::vm::input::parse_time(u))) {
        Some((text, None)) => {
            eprintln!("journeyc: error: `--until {text}` is not an RFC 3339 time such as 2026-01-01T00:00:00Z");
            return ExitCode::from(2);
        }
        Some((_, time)) => time,
        None => None,
    };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|error| {
            eprintln!("journeyc: error: cannot read `{}`: {error}", path.display());
            ExitCode::from(2)
        })
    };
    let mut rejected = Vec::new();
    let mut inputs = Vec::new();
    // Initial traits first, then the events.
    for path in profiles.into_iter().chain([events]) {
        match read(path) {
            Ok(text) => inputs.extend(sim::decode_lines(
                &program,
                &path.display().to_string(),
                &text,
                &mut rejected,
            )),
            Err(code) => return code,
        }
    }
    for r in &rejected {
        eprintln!("{}:{}: rejected: {}", r.file, r.line, r.message);
    }
    let engine = sim::run(&program, inputs, until);
    let mut out = std::io::stdout().lock();
    for record in &engine.timeline {
        let line = match format {
            TimelineFormat::Jsonl => sim::record_json(&engine, record).to_string(),
            TimelineFormat::Human => sim::record_text(&engine, record),
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(2);
        }
    }
    if !rejected.is_empty() {
        eprintln!(
            "{} input line{} rejected",
            rejected.len(),
            plural(rejected.len())
        );
    }
    if stats {
        eprint!("{}", sim::stats_text(&program, &engine));
    }
    ExitCode::SUCCESS
}

fn disasm(file: &std::path::Path) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("journeyc: error: cannot read `{}`: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let program = match journey_runtime::bytecode::read(&bytes) {
        Ok(program) => program,
        Err(error) => {
            eprintln!(
                "journeyc: error: `{}` is not a valid bytecode file: {error}",
                file.display()
            );
            return ExitCode::from(1);
        }
    };
    if let Err(error) = journey_runtime::bytecode::verify::verify(&program) {
        eprintln!(
            "journeyc: error: `{}` fails verification: {error}",
            file.display()
        );
        return ExitCode::from(1);
    }
    print!(
        "{}",
        journey_runtime::bytecode::disasm::disassemble(&program)
    );
    ExitCode::SUCCESS
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn explain(code: Option<&str>) -> ExitCode {
    let Some(code) = code else {
        println!("Diagnostic codes (`journeyc explain CODE` for one):\n");
        for code in Code::ALL {
            println!(
                "  {}  {:<22} {:<8} {}",
                code.id(),
                code.name(),
                code.severity().as_str(),
                code.summary()
            );
        }
        return ExitCode::SUCCESS;
    };
    match Code::parse(code) {
        Some(code) => {
            print!("{}", code.explanation());
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "journeyc: error: unknown diagnostic code `{code}`; `journeyc explain` lists them all"
            );
            ExitCode::from(2)
        }
    }
}
