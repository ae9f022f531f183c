//! The pool of OS versions a replica can run, each named by the
//! vendor:product:version of its CPE; [`Pool::seed17`] is the seed's Table 2.

use serde::Serialize;

use crate::LazarusError;

/// One OS version of the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OsVersion {
    /// The short name of the seed's Table 2 (`UB16`).
    pub id: String,
    pub name: String,
    /// The OS family (the synthetic data shares more within a family).
    pub family: String,
    /// CPE vendor, product and version (lower case; version `-` when the
    /// product name carries it, as NVD names Windows).
    pub vendor: String,
    pub product: String,
    pub version: String,
}

/// An OS version: its position in the pool.
pub type OsId = usize;

/// The OS versions replicas can run (at most [`Pool::MAX`], so that a set of
/// them fits a `u64` mask).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub os: Vec<OsVersion>,
}

/// The seed's 17 OS versions, one a line: id | name | family | CPE vendor |
/// CPE product | CPE version.
const SEED17: &str = "\
UB14 | Ubuntu 14.04     | ubuntu   | canonical     | ubuntu_linux        | 14.04
UB16 | Ubuntu 16.04     | ubuntu   | canonical     | ubuntu_linux        | 16.04
UB17 | Ubuntu 17.04     | ubuntu   | canonical     | ubuntu_linux        | 17.04
OS42 | OpenSuse 42.1    | opensuse | opensuse      | leap                | 42.1
FE24 | Fedora 24        | fedora   | fedoraproject | fedora              | 24
FE25 | Fedora 25        | fedora   | fedoraproject | fedora              | 25
FE26 | Fedora 26        | fedora   | fedoraproject | fedora              | 26
DE7  | Debian 7         | debian   | debian        | debian_linux        | 7.0
DE8  | Debian 8         | debian   | debian        | debian_linux        | 8.0
W10  | Windows 10       | windows  | microsoft     | windows_10          | -
WS12 | Win. Server 2012 | windows  | microsoft     | windows_server_2012 | -
FB10 | FreeBSD 10       | freebsd  | freebsd       | freebsd             | 10.0
FB11 | FreeBSD 11       | freebsd  | freebsd       | freebsd             | 11.0
SO10 | Solaris 10       | solaris  | oracle        | solaris             | 10
SO11 | Solaris 11       | solaris  | oracle        | solaris             | 11
OB60 | OpenBSD 6.0      | openbsd  | openbsd       | openbsd             | 6.0
OB61 | OpenBSD 6.1      | openbsd  | openbsd       | openbsd             | 6.1
";

impl Pool {
    /// The largest pool.
    pub const MAX: usize = 64;

    /// A pool of OS versions; ids must be distinct, at most [`Pool::MAX`].
    pub fn new(os: Vec<OsVersion>) -> Result<Pool, LazarusError> {
        if os.is_empty() || os.len() > Pool::MAX {
            return Err(LazarusError::Pool(format!(
                "{} OS versions (1 to {} allowed)",
                os.len(),
                Pool::MAX
            )));
        }
        for (i, o) in os.iter().enumerate() {
            if os[..i].iter().any(|p| p.id == o.id) {
                return Err(LazarusError::Pool(format!("OS id {} appears twice", o.id)));
            }
        }
        Ok(Pool { os })
    }

    /// The 17 OS versions of the seed (Lazarus, Table 2).
    pub fn seed17() -> Pool {
        let os = SEED17
            .lines()
            .map(|line| {
                let f: Vec<String> = line.split('|').map(|x| x.trim().to_string()).collect();
                OsVersion {
                    id: f[0].clone(),
                    name: f[1].clone(),
                    family: f[2].clone(),
                    vendor: f[3].clone(),
                    product: f[4].clone(),
                    version: f[5].clone(),
                }
            })
            .collect();
        Pool { os }
    }

    pub fn len(&self) -> usize {
        self.os.len()
    }

    pub fn is_empty(&self) -> bool {
        self.os.is_empty()
    }

    /// The position of the OS version named `id` (case-insensitive).
    pub fn index_of(&self, id: &str) -> Option<OsId> {
        self.os.iter().position(|o| o.id.eq_ignore_ascii_case(id))
    }

    /// Parses a comma-separated list of ids (`UB16,DE8,W10,OB61`).
    pub fn parse_set(&self, list: &str) -> Result<Vec<OsId>, LazarusError> {
        list.split(',')
            .map(|s| {
                self.index_of(s.trim())
                    .ok_or_else(|| LazarusError::Pool(format!("unknown OS id {:?}", s.trim())))
            })
            .collect()
    }

    /// The ids of a set, for printing.
    pub fn names(&self, set: &[OsId]) -> Vec<String> {
        set.iter().map(|&i| self.os[i].id.clone()).collect()
    }
}
