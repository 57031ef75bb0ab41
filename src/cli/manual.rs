//! `preheat man`: the manual page, generated from the CLI definition and the configuration
//! reference, so it cannot drift from either: every command with its options, the
//! configuration file, the environment variables and the exit codes.

use clap::{Arg, Command};
use roff::{Inline, Roff, bold, italic, roman};

use super::Exit;

/// The configuration reference, the same text as `docs/configuration.md`.
const CONFIGURATION: &str = include_str!("../../docs/configuration.md");

/// Variables read outside the flags' definitions.
const OTHER_VARIABLES: [(&str, &str); 4] = [
    (
        "PREHEAT_SKIP",
        "Skip the warm (1, true or yes; 0, false, no or empty do not), as warm.enabled = false.",
    ),
    ("RUST_LOG", "Log filter (tracing's EnvFilter syntax); overrides -v and -q."),
    ("PREHEAT_BIN", "deploy/entrypoint.sh: the preheat binary to run [default: preheat on the PATH]."),
    (
        "PREHEAT_HARD_TIMEOUT",
        "deploy/entrypoint.sh: seconds after which the warm is killed and the application starts anyway [default: 330].",
    ),
];

/// What each exit status means.
const EXIT_CODES: [(Exit, &str); 5] = [
    (
        Exit::Ok,
        "Success. warm exits 0 whenever its config is valid, degraded and failed warms included, unless --strict.",
    ),
    (
        Exit::Failure,
        "The run failed: no input readable, no profile written or readable; config check --connect: the backend or a source cannot be reached.",
    ),
    (Exit::Usage, "Invalid invocation or configuration; the message names the place and the fix."),
    (Exit::Partial, "analyze wrote a profile, but some inputs could not be read in full."),
    (
        Exit::Strict,
        "warm --strict: the warm was degraded or failed (keys failed, invalid or not started), or the profile was stale and not used.",
    ),
];

/// The whole manual page, in roff.
pub fn render(cli: &Command) -> String {
    let mut cli = cli.clone();
    cli.build();
    let mut page = Roff::new();
    let version = cli.get_version().unwrap_or_default().to_string();
    // No date: the page is made from the binary, whenever it was built. An empty argument
    // must be written as `""`, or the next one would take its place.
    page.control("TH", ["PREHEAT", "1", "\"\"", &format!("preheat {version}"), "User Commands"]);
    page.control("SH", ["NAME"]);
    page.text([roman(format!("preheat - {}", about(&cli)))]);
    page.control("SH", ["SYNOPSIS"]);
    page.text([
        bold("preheat"),
        roman(" ["),
        italic("GLOBAL OPTIONS"),
        roman("] "),
        italic("COMMAND"),
        roman(" ["),
        italic("OPTIONS"),
        roman("]"),
    ]);
    page.control("SH", ["DESCRIPTION"]);
    page.text([roman(
        "preheat learns from access logs which cache entries are hot and warms them before traffic arrives: \
         analyze turns logs into a profile, plan and warm load the hottest keys from their sources into the \
         cache inside hard time and memory budgets, report sizes the cache and verify checks a warm against \
         the traffic after a deploy.",
    )]);
    page.control("SH", ["GLOBAL OPTIONS"]);
    for arg in cli.get_arguments().filter(|a| shown(a)) {
        option(&mut page, arg);
    }
    page.control("SH", ["COMMANDS"]);
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        command(&mut page, sub, "preheat");
    }
    page.control("SH", ["CONFIGURATION"]);
    markdown(&mut page, CONFIGURATION);
    page.control("SH", ["ENVIRONMENT"]);
    for (name, help) in variables(&cli) {
        page.control("TP", []);
        page.text([bold(name)]);
        page.text([roman(help)]);
    }
    page.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        page.control("TP", []);
        page.text([bold((code as u8).to_string())]);
        page.text([roman(meaning)]);
    }
    page.control("SH", ["SEE ALSO"]);
    page.text([roman("The README and docs/configuration.md in preheat's sources; preheat COMMAND --help.")]);
    page.render()
}

/// A command's one-line description.
fn about(cmd: &Command) -> String {
    cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
}

/// Options a person sets (not `--help`/`--version`, and global ones only where defined).
fn shown(arg: &Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// One command and its own options, then its subcommands.
fn command(page: &mut Roff, cmd: &Command, parent: &str) {
    let path = format!("{parent} {}", cmd.get_name());
    page.control("SS", [path.as_str()]);
    let text = cmd.get_long_about().or(cmd.get_about()).map(|a| a.to_string()).unwrap_or_default();
    page.text([roman(text)]);
    page.control("PP", []);
    let usage = cmd.clone().render_usage().to_string();
    page.text([roman(
        usage.trim().replacen("Usage: ", "Usage: preheat ", 1).replace("preheat preheat", "preheat"),
    )]);
    for arg in cmd.get_arguments().filter(|a| shown(a) && !a.is_global_set()) {
        option(page, arg);
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        command(page, sub, &path);
    }
}

/// One option: its spelling, then its help, possible values, default and variable.
fn option(page: &mut Roff, arg: &Arg) {
    let mut head: Vec<Inline> = Vec::new();
    let value = arg.get_value_names().and_then(|n| n.first()).map(|n| n.to_string());
    let value = value.unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    if arg.is_positional() {
        head.push(italic(value));
    } else {
        if let Some(short) = arg.get_short() {
            head.push(bold(format!("-{short}")));
            head.push(roman(", "));
        }
        if let Some(long) = arg.get_long() {
            head.push(bold(format!("--{long}")));
        }
        match arg.get_num_args() {
            _ if !arg.get_action().takes_values() => {}
            Some(n) if n.min_values() == 0 => head.push(italic(format!(" [{value}]"))),
            _ => {
                head.push(roman(" "));
                head.push(italic(value));
            }
        }
    }
    page.control("TP", []);
    page.text(head);
    let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
    let mut notes = Vec::new();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() && !arg.is_hide_possible_values_set() {
        notes.push(format!("one of: {}", values.join(", ")));
    }
    let defaults: Vec<String> =
        arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && !arg.is_hide_default_value_set() && arg.get_action().takes_values() {
        notes.push(format!("default: {}", defaults.join(", ")));
    }
    if let Some(env) = arg.get_env() {
        notes.push(format!("variable: {}", env.to_string_lossy()));
    }
    let notes = if notes.is_empty() { String::new() } else { format!(" [{}]", notes.join("; ")) };
    page.text([roman(format!("{help}{notes}"))]);
}

/// Every variable a flag reads, with its help, then the others; each once.
fn variables(cli: &Command) -> Vec<(String, String)> {
    fn collect(cmd: &Command, out: &mut Vec<(String, String)>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                let name = env.to_string_lossy().into_owned();
                if !out.iter().any(|(n, _)| *n == name) {
                    let flag = arg.get_long().map_or(String::new(), |l| format!("--{l}: "));
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    out.push((name, format!("{flag}{help}")));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = Vec::new();
    collect(cli, &mut out);
    out.extend(OTHER_VARIABLES.iter().map(|(n, h)| (n.to_string(), h.to_string())));
    out
}

/// The configuration reference's Markdown as roff: headings, paragraphs, lists, tables and
/// code blocks, with `code` and **strong** text in bold.
fn markdown(page: &mut Roff, text: &str) {
    let mut paragraph: Vec<&str> = Vec::new();
    let mut item = false;
    let mut lines = text.lines();
    let flush = |page: &mut Roff, paragraph: &mut Vec<&str>, item: &mut bool| {
        if !paragraph.is_empty() {
            if *item {
                page.control("IP", ["\u{2022}", "2"]);
            } else {
                page.control("PP", []);
            }
            page.text(inline(&paragraph.join(" ")));
        }
        paragraph.clear();
        *item = false;
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if line.starts_with("# ") {
            continue;
        }
        if trimmed.starts_with("```") {
            flush(page, &mut paragraph, &mut item);
            page.control("PP", []);
            page.control("nf", []);
            for code in lines.by_ref().take_while(|l| !l.trim_start().starts_with("```")) {
                page.text([roman(code)]);
            }
            page.control("fi", []);
        } else if let Some(title) = line.strip_prefix("## ").or_else(|| line.strip_prefix("### ")) {
            flush(page, &mut paragraph, &mut item);
            page.control("SS", [title]);
        } else if trimmed.starts_with('|') {
            flush(page, &mut paragraph, &mut item);
            if trimmed.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                continue;
            }
            let cells: Vec<&str> = trimmed.trim_matches('|').split('|').map(str::trim).collect();
            page.control("TP", []);
            page.text(inline(cells[0]));
            page.text(inline(&cells[1..].join(" \u{2014} ")));
        } else if let Some(rest) = line.strip_prefix("- ") {
            flush(page, &mut paragraph, &mut item);
            item = true;
            paragraph.push(rest);
        } else if trimmed.is_empty() {
            flush(page, &mut paragraph, &mut item);
        } else {
            paragraph.push(trimmed);
        }
    }
    flush(page, &mut paragraph, &mut item);
}

/// Markdown inline text: `code` and **strong** become bold, the rest roman.
fn inline(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut strong = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let marker = if rest.starts_with("**") {
            Some(2)
        } else if c == '`' {
            Some(1)
        } else {
            None
        };
        match marker {
            Some(len) => {
                if !current.is_empty() {
                    out.push(if strong { bold(current.clone()) } else { roman(current.clone()) });
                    current.clear();
                }
                strong = !strong;
                rest = &rest[len..];
            }
            None => {
                current.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !current.is_empty() {
        out.push(if strong { bold(current) } else { roman(current) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_strong_text_are_bold() {
        assert_eq!(
            inline("a `b` and **c** d"),
            vec![roman("a "), bold("b"), roman(" and "), bold("c"), roman(" d")]
        );
    }
}
