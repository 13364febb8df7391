//! Windows paths given to a server that runs on Linux (in particular under WSL).
//!
//! An MCP client on Windows (VS Code, Claude Desktop) often hands the server a Windows path
//! for the workspace even when the server runs inside WSL. Under WSL such a path is translated
//! to the path the same directory has inside the distro before the allowed-roots check:
//!
//! | given                                   | under WSL (distro `Ubuntu`)  |
//! |-----------------------------------------|------------------------------|
//! | `C:\Users\me\proj`, `C:/Users/me/proj`  | `/mnt/c/Users/me/proj`       |
//! | `\\wsl$\Ubuntu\home\me\proj`            | `/home/me/proj`              |
//! | `\\wsl.localhost\Ubuntu\home\me\proj`   | `/home/me/proj`              |
//! | `\\wsl$\Debian\…` (another distro)      | error                        |
//! | `\\server\share\…`, `C:proj`, `C:`      | error                        |
//!
//! The automount root (`/mnt/` by default) comes from `/etc/wsl.conf` (`[automount] root=`).
//! Not under WSL, a Windows path is a clear error instead of a confusing "no such file".
//! Detection is separate from translation ([`Host`]), so the translation is testable anywhere.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the server runs, as far as path translation is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Linux under WSL.
    Wsl {
        /// `$WSL_DISTRO_NAME`, when set.
        distro: Option<String>,
        /// Where Windows drives are mounted, with a trailing `/` (default `/mnt/`).
        automount_root: String,
    },
    /// Anything else (plain Linux, macOS).
    Native,
}

/// Default automount root of WSL.
pub const DEFAULT_AUTOMOUNT_ROOT: &str = "/mnt/";

/// A Windows path that cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(
        "workspace `{0}` is a Windows path, but this server runs on Linux/macOS (not under WSL); give a path on this machine"
    )]
    NotWsl(String),
    #[error(
        "workspace `{given}` is in WSL distro `{distro}`, but this server runs in {here}; give a path inside this distro (for example /home/...)"
    )]
    OtherDistro {
        given: String,
        distro: String,
        here: String,
    },
    #[error(
        "workspace `{0}` is a network share (UNC path); only drive paths (C:\\...) and \\\\wsl$\\<this distro>\\... paths can be translated to a path in WSL"
    )]
    Unc(String),
    #[error(
        "workspace `{0}` is not an absolute Windows path; give a full path such as C:\\Users\\me\\project"
    )]
    DriveRelative(String),
}

/// How `s` looks.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// Not a Windows path: used as given.
    Posix,
    /// `C:\rest` or `C:/rest`: drive letter and the rest (separators still raw).
    Drive(char, &'a str),
    /// `C:` or `C:rest`.
    DriveRelative,
    /// `\\host\share\rest` (either separator): host and the components after it.
    Unc(&'a str, Vec<&'a str>),
}

fn classify(s: &str) -> Kind<'_> {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        let letter = char::from(b[0]);
        return match b.get(2) {
            Some(b'\\') | Some(b'/') => Kind::Drive(letter, &s[3..]),
            _ => Kind::DriveRelative,
        };
    }
    let lower = s.to_ascii_lowercase();
    let wsl_share = lower.starts_with("//wsl$/") || lower.starts_with("//wsl.localhost/");
    if s.starts_with("\\\\") || s.starts_with("\\/") || s.starts_with("/\\") || wsl_share {
        let mut parts = s[2..].split(['\\', '/']).filter(|p| !p.is_empty());
        let host = parts.next().unwrap_or("");
        return Kind::Unc(host, parts.collect());
    }
    Kind::Posix
}

/// `s` as a path on this machine: unchanged unless it is a Windows path (see the module
/// docs).
pub fn translate(host: &Host, s: &str) -> Result<String, PathError> {
    let kind = classify(s);
    if kind == Kind::Posix {
        return Ok(s.to_string());
    }
    let (distro, root) = match host {
        Host::Native => return Err(PathError::NotWsl(s.to_string())),
        Host::Wsl {
            distro,
            automount_root,
        } => (distro.as_deref(), automount_root.as_str()),
    };
    match kind {
        Kind::Posix => Ok(s.to_string()),
        Kind::DriveRelative => Err(PathError::DriveRelative(s.to_string())),
        Kind::Drive(letter, rest) => {
            let rest = rest
                .split(['\\', '/'])
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("/");
            let root = if root.ends_with('/') {
                root.to_string()
            } else {
                format!("{root}/")
            };
            let drive = letter.to_ascii_lowercase();
            if rest.is_empty() {
                Ok(format!("{root}{drive}"))
            } else {
                Ok(format!("{root}{drive}/{rest}"))
            }
        }
        Kind::Unc(h, parts) => {
            let h = h.to_ascii_lowercase();
            if h != "wsl$" && h != "wsl.localhost" {
                return Err(PathError::Unc(s.to_string()));
            }
            let Some((name, rest)) = parts.split_first() else {
                return Err(PathError::Unc(s.to_string()));
            };
            match distro {
                Some(d) if d.eq_ignore_ascii_case(name) => Ok(format!("/{}", rest.join("/"))),
                _ => Err(PathError::OtherDistro {
                    given: s.to_string(),
                    distro: name.to_string(),
                    here: match distro {
                        Some(d) => format!("distro `{d}`"),
                        None => "a WSL distro whose name is unknown ($WSL_DISTRO_NAME is unset)"
                            .to_string(),
                    },
                }),
            }
        }
    }
}

/// The `root` of `[automount]` in the text of `/etc/wsl.conf`, with a trailing `/`.
pub fn automount_root(wsl_conf: &str) -> Option<String> {
    let mut in_automount = false;
    for line in wsl_conf.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_automount = line.trim_matches(['[', ']']).trim() == "automount";
            continue;
        }
        if !in_automount {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == "root"
        {
            let v = v.trim().trim_matches('"').trim();
            if v.is_empty() {
                return None;
            }
            return Some(if v.ends_with('/') {
                v.to_string()
            } else {
                format!("{v}/")
            });
        }
    }
    None
}

/// Whether the kernel is WSL's, from the existence of the interop entry and `/proc/version`.
pub fn is_wsl(interop_exists: bool, proc_version: &str) -> bool {
    interop_exists || proc_version.contains("microsoft") || proc_version.contains("WSL")
}

/// Detects the host from `/proc`, `/etc/wsl.conf` and `$WSL_DISTRO_NAME`.
pub fn detect() -> Host {
    let interop = std::path::Path::new("/proc/sys/fs/binfmt_misc/WSLInterop").exists();
    let version = std::fs::read_to_string("/proc/version").unwrap_or_default();
    if !is_wsl(interop, &version) {
        return Host::Native;
    }
    let conf = std::fs::read_to_string("/etc/wsl.conf").unwrap_or_default();
    Host::Wsl {
        distro: std::env::var("WSL_DISTRO_NAME")
            .ok()
            .filter(|d| !d.is_empty()),
        automount_root: automount_root(&conf).unwrap_or_else(|| DEFAULT_AUTOMOUNT_ROOT.into()),
    }
}

/// The host this process runs on (detected once).
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(detect)
}

/// `s` as a path on this machine, for the detected host.
pub fn local_path(s: &str) -> Result<PathBuf, PathError> {
    translate(host(), s).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wsl(distro: Option<&str>, root: &str) -> Host {
        Host::Wsl {
            distro: distro.map(str::to_string),
            automount_root: root.to_string(),
        }
    }

    #[test]
    fn under_wsl_windows_paths_become_wsl_paths() {
        let h = wsl(Some("Ubuntu"), "/mnt/");
        let cases: &[(&str, Result<&str, PathError>)] = &[
            (r"C:\Users\me\proj", Ok("/mnt/c/Users/me/proj")),
            ("C:/Users/me/proj", Ok("/mnt/c/Users/me/proj")),
            (r"d:\work\", Ok("/mnt/d/work")),
            (r"C:\Users\\me/proj\", Ok("/mnt/c/Users/me/proj")),
            (r"C:\", Ok("/mnt/c")),
            (r"\\wsl$\Ubuntu\home\me\proj", Ok("/home/me/proj")),
            (r"\\wsl.localhost\Ubuntu\home\me\proj", Ok("/home/me/proj")),
            (r"\\WSL.LOCALHOST\ubuntu\home\me", Ok("/home/me")),
            ("//wsl$/Ubuntu/home/me/proj", Ok("/home/me/proj")),
            ("//srv/share", Ok("//srv/share")),
            (r"\\wsl$\Ubuntu", Ok("/")),
            ("/home/me/proj", Ok("/home/me/proj")),
            ("relative/dir", Ok("relative/dir")),
            (
                r"\\wsl$\Debian\home\me",
                Err(PathError::OtherDistro {
                    given: r"\\wsl$\Debian\home\me".into(),
                    distro: "Debian".into(),
                    here: "distro `Ubuntu`".into(),
                }),
            ),
            (
                r"\\fileserver\share\proj",
                Err(PathError::Unc(r"\\fileserver\share\proj".into())),
            ),
            (r"\\wsl$", Err(PathError::Unc(r"\\wsl$".into()))),
            ("C:proj", Err(PathError::DriveRelative("C:proj".into()))),
            ("C:", Err(PathError::DriveRelative("C:".into()))),
        ];
        for (given, want) in cases {
            let got = translate(&h, given);
            assert_eq!(got, want.clone().map(str::to_string), "{given}");
        }
    }

    #[test]
    fn automount_root_is_honoured() {
        assert_eq!(
            translate(&wsl(Some("Ubuntu"), "/"), r"E:\data"),
            Ok("/e/data".to_string())
        );
        assert_eq!(
            translate(&wsl(Some("Ubuntu"), "/windir"), r"C:\x"),
            Ok("/windir/c/x".to_string())
        );
    }

    #[test]
    fn unknown_distro_name_refuses_wsl_shares() {
        let e = translate(&wsl(None, "/mnt/"), r"\\wsl$\Ubuntu\home");
        assert_eq!(
            e,
            Err(PathError::OtherDistro {
                given: r"\\wsl$\Ubuntu\home".into(),
                distro: "Ubuntu".into(),
                here: "a WSL distro whose name is unknown ($WSL_DISTRO_NAME is unset)".into(),
            })
        );
    }

    #[test]
    fn not_under_wsl_windows_paths_are_refused_with_an_explanation() {
        for p in [
            r"C:\Users\me\proj",
            "C:/x",
            r"\\wsl$\Ubuntu\home",
            r"\\srv\s",
        ] {
            assert_eq!(
                translate(&Host::Native, p),
                Err(PathError::NotWsl(p.to_string()))
            );
        }
        assert_eq!(
            translate(&Host::Native, "/home/me/proj"),
            Ok("/home/me/proj".to_string())
        );
        assert_eq!(
            PathError::NotWsl(r"C:\p".into()).to_string(),
            r"workspace `C:\p` is a Windows path, but this server runs on Linux/macOS (not under WSL); give a path on this machine"
        );
    }

    #[test]
    fn wsl_conf_automount_root() {
        let cases = [
            ("", None),
            ("[automount]\nroot = /\n", Some("/")),
            (
                "[boot]\nroot=/nope\n[automount]\nenabled=true\nroot=/windir # c\n",
                Some("/windir/"),
            ),
            ("[automount]\nroot=\"/w/\"\n", Some("/w/")),
            ("[automount]\n# root=/x\n", None),
            ("[network]\nroot=/x\n", None),
        ];
        for (conf, want) in cases {
            assert_eq!(automount_root(conf).as_deref(), want, "{conf:?}");
        }
    }

    #[test]
    fn wsl_detection() {
        assert!(is_wsl(true, ""));
        assert!(is_wsl(
            false,
            "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@host)"
        ));
        assert!(!is_wsl(
            false,
            "Linux version 6.8.0-45-generic (buildd@lcy02) (gcc 13)"
        ));
    }
}
