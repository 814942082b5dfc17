//! The settings of knudepunkt's binaries (`signalling`, `sfu`, `gateway`): a file
//! (`--config FILE`, TOML) with the same keys as the command's flags (`http = "0.0.0.0:8080"`, `udp-bind = ["10.0.0.5"]`, `sip-allow-plain-rtp =
//! true`; `snake_case` keys too), and the effective configuration printed with its
//! secrets masked (`--print-config`).
//!
//! Precedence: a flag on the command line, then its environment variable, then the
//! file, then the default. The file's keys become flags placed before the command
//! line's, leaving out every key the command line or the environment already sets;
//! clap then checks their values as it checks any flag's.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, Parser};

/// `T` from the process's command line and its `--config` file (`T` has the flags
/// `config: Option<PathBuf>` and `print_config: bool`). With `--print-config` the
/// effective settings are printed and the process exits; a file that cannot be read
/// or holds what is no flag ends it with status 2, as clap's own errors do.
pub fn parse<T: Parser>() -> T {
    let fail = |e: String| -> ! {
        eprintln!("error: {e}");
        std::process::exit(2)
    };
    let (argv, from_file) =
        with_config_file(&T::command(), std::env::args_os().collect()).unwrap_or_else(|e| fail(e));
    let matches = T::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    if matches.get_flag("print_config") {
        print!("{}", print(&T::command(), &matches, &from_file));
        std::process::exit(0);
    }
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The command line with the `--config` file's settings in front (`--config FILE` or
/// `--config=FILE`), and those settings as flags (to say where a value came from).
pub fn with_config_file(
    cmd: &Command,
    argv: Vec<OsString>,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let given = argv.get(1..).unwrap_or_default();
    let path = given.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_str()?;
        match a.strip_prefix("--config") {
            Some("") => given.get(i + 1).map(PathBuf::from),
            Some(rest) => rest.strip_prefix('=').map(PathBuf::from),
            None => None,
        }
    });
    let Some(path) = path else {
        return Ok((argv, Vec::new()));
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let env = |name: &str| std::env::var_os(name).is_some();
    let from_file = args_from_toml(cmd, &text, given, env)
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    let mut out = Vec::with_capacity(argv.len() + from_file.len());
    out.extend(argv.first().cloned());
    out.extend(from_file.iter().map(OsString::from));
    out.extend(given.iter().cloned());
    Ok((out, from_file))
}

/// Flags no file may set: the file's own, and what only makes sense typed.
const NOT_IN_FILE: [&str; 4] = ["config", "print_config", "help", "version"];

/// Whether an argument holds a secret: masked when printed.
fn secret(id: &str) -> bool {
    // A public key's path is no secret (and the private key is never a setting). A
    // Redis URL may hold its password.
    ["secret", "password", "token", "redis"]
        .iter()
        .any(|s| id.contains(s))
        && !id.contains("public_key")
        && !id.contains("public-key")
}

/// The flags of `text` (a TOML file) for `cmd`, to go before the command line's
/// `given` arguments: keys set on the command line or in the environment are left
/// out. Unknown keys, tables and values of the wrong shape are errors naming the key.
pub fn args_from_toml(
    cmd: &Command,
    text: &str,
    given: &[OsString],
    env: impl Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut out = Vec::new();
    for (key, value) in &table {
        // The flag's name (`trusted-proxy`), or with underscores (`trusted_proxy`).
        let name = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
            .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
            .ok_or_else(|| format!("unknown key `{key}` (the keys are the flags, see --help)"))?;
        let long = arg.get_long().expect("filtered on a long name");
        let on_command_line = given.iter().any(|g| {
            g.to_str()
                .is_some_and(|g| g == format!("--{long}") || g.starts_with(&format!("--{long}=")))
        });
        let in_env = arg.get_env().and_then(|e| e.to_str()).is_some_and(&env);
        if on_command_line || in_env {
            continue;
        }
        let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let many = matches!(arg.get_action(), ArgAction::Append);
        // `--flag=value`, one argument: a value that begins with `-` (a password, a
        // negative number) stays a value.
        let with = |v: String| format!("--{long}={v}");
        match value {
            toml::Value::Boolean(on) if switch => {
                if *on {
                    out.push(format!("--{long}"));
                }
            }
            _ if switch => return Err(format!("`{key}` is true or false")),
            toml::Value::Array(items) if many => {
                for item in items {
                    out.push(with(scalar(key, item)?));
                }
            }
            toml::Value::Array(_) => return Err(format!("`{key}` takes one value, not a list")),
            v => out.push(with(scalar(key, v)?)),
        }
    }
    Ok(out)
}

fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("`{key}`: a string, number or boolean")),
    }
}

/// The effective configuration, as a TOML file with the same keys, each commented
/// with where its value came from; secrets masked.
pub fn print(cmd: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&id) {
            continue;
        }
        let Some(source) = matches.value_source(id) else {
            continue;
        };
        let (flag, valued) = (format!("--{long}"), format!("--{long}="));
        let in_file = from_file
            .iter()
            .any(|f| *f == flag || f.starts_with(&valued));
        let from = match source {
            ValueSource::CommandLine if in_file => "file",
            ValueSource::CommandLine => "command line",
            ValueSource::EnvVariable => "environment",
            _ => "default",
        };
        let value = if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            matches.get_flag(id).to_string()
        } else {
            let values: Vec<String> = matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| {
                    if secret(id) {
                        "\"********\"".to_owned()
                    } else {
                        toml::Value::String(v.to_string_lossy().into_owned()).to_string()
                    }
                })
                .collect();
            if matches!(arg.get_action(), ArgAction::Append) {
                format!("[{}]", values.join(", "))
            } else {
                values.join(", ")
            }
        };
        out.push_str(&format!("{long} = {value}  # {from}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("t")
            .arg(
                Arg::new("http")
                    .long("http")
                    .default_value("127.0.0.1:8080"),
            )
            .arg(Arg::new("secret").long("secret").env("T_SECRET"))
            .arg(
                Arg::new("udp_bind")
                    .long("udp-bind")
                    .action(ArgAction::Append),
            )
            .arg(Arg::new("plain").long("plain").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config"))
    }

    fn args(text: &str, given: &[&str], env: &[&str]) -> Result<Vec<String>, String> {
        let given: Vec<OsString> = given.iter().map(OsString::from).collect();
        args_from_toml(&cmd(), text, &given, |e| env.contains(&e))
    }

    #[test]
    fn keys_become_flags_unless_the_command_line_or_environment_has_them() {
        let text = "http = \"0.0.0.0:80\"\nudp_bind = [\"10.0.0.1\", \"::1\"]\nplain = true\n\
                    secret = \"from-the-file\"\n";
        let a = args(text, &[], &[]).unwrap();
        assert_eq!(
            a,
            [
                "--http=0.0.0.0:80",
                "--plain",
                "--secret=from-the-file",
                "--udp-bind=10.0.0.1",
                "--udp-bind=::1"
            ]
        );
        // A value that begins with `-` stays a value; flag names with underscores too.
        assert_eq!(
            args(
                "secret = \"-starts-with-a-dash\"\nudp_bind = [\"x\"]",
                &[],
                &[]
            )
            .unwrap(),
            ["--secret=-starts-with-a-dash", "--udp-bind=x"]
        );
        let a = args(
            text,
            &["--http=1.2.3.4:5", "--udp-bind", "::2"],
            &["T_SECRET"],
        )
        .unwrap();
        assert_eq!(a, ["--plain"]);
        assert_eq!(
            args("plain = false", &[], &[]).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn what_is_not_a_flag_or_of_the_wrong_shape_is_refused() {
        assert!(args("colour = \"red\"", &[], &[])
            .unwrap_err()
            .contains("colour"));
        assert!(
            args("config = \"x.toml\"", &[], &[]).is_err(),
            "no file names another"
        );
        assert!(args("plain = \"yes\"", &[], &[]).is_err());
        assert!(args("http = [\"a\", \"b\"]", &[], &[]).is_err());
        assert!(args("[http]\nx = 1", &[], &[]).is_err());
        assert!(args("http = ", &[], &[]).is_err());
    }

    #[test]
    fn the_effective_configuration_says_where_each_value_came_from_and_masks_secrets() {
        let file = args("http = \"0.0.0.0:80\"\nsecret = \"s3cr3t-value\"", &[], &[]).unwrap();
        let mut argv = vec!["t".to_owned()];
        argv.extend(file.iter().cloned());
        argv.extend(["--udp-bind".into(), "::1".into()]);
        let m = cmd().get_matches_from(argv);
        let printed = print(&cmd(), &m, &file);
        assert!(
            printed.contains("http = \"0.0.0.0:80\"  # file"),
            "{printed}"
        );
        assert!(
            printed.contains("udp-bind = [\"::1\"]  # command line"),
            "{printed}"
        );
        assert!(
            printed.contains("secret = \"********\"  # file"),
            "{printed}"
        );
        assert!(printed.contains("plain = false"), "{printed}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }
}
