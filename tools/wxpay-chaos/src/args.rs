//! The command line: what a campaign runs on, and the command that runs it again.

use std::path::PathBuf;

pub const USAGE: &str = "\
wxpay-chaos: a randomised fault campaign against the router binary; checks the ledger
against the WeChat Pay simulator's at the end.

USAGE: wxpay-chaos [OPTIONS]

  --minutes N        how long the faults and stories run (fractions allowed) [1]
  --seed S           the seed every decision comes from [the clock]
  --store KIND       sqlite (a temporary file) or mysql [sqlite]
  --mysql-url URL    the MySQL server, mysql://USER@HOST:PORT; a database chaos_<seed> is
                     created there and dropped afterwards [TEST_DATABASE_URL's server, else
                     mysql://root@127.0.0.1:3306]
  --private-mariadb  (with --store mysql) start a MariaDB server of the campaign's own on a
                     free port, which the fault schedule then restarts (crash or clean
                     shutdown); the shared server is never restarted
  --cluster-urls L   (with --store mysql) comma-separated mysql://USER@HOST:PORT of the nodes of
                     a multi-primary cluster (scripts/galera.sh urls): the database is made
                     through the first, instance i stores through node i
  --restart-nodes SCRIPT
                     (with --cluster-urls) the fault schedule also crashes one node at a time
                     and starts it again through SCRIPT (scripts/galera.sh kill-node N,
                     start-node N); the URLs must be the script's nodes, in its order
  --bin PATH         the router binary, built with SQLite for --store sqlite
                     [target/debug/wxpay_functions]
  --instances K      router processes, at least 3 [3]
  --workers W        orders in flight at once [6]
  -h, --help         this text

Exits 1 on any violation (each printed with its order's story and the seed), 2 when the
campaign could not run.";

pub struct Args {
    pub minutes: f64,
    pub seed: u64,
    pub store: String,
    pub mysql_url: String,
    pub bin: PathBuf,
    pub instances: usize,
    pub workers: u64,
    pub private_mariadb: bool,
    pub cluster: Vec<String>,
    pub node_script: Option<PathBuf>,
}

/// `mysql://USER@HOST:PORT` of a URL that may name a database and parameters.
fn server_of(url: &str) -> String {
    let rest = url.strip_prefix("mysql://").unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("mysql://{host}")
}

pub fn parse_args() -> Result<Option<Args>, String> {
    let server = std::env::var("TEST_DATABASE_URL")
        .ok()
        .and_then(|u| u.rsplit_once('/').map(|(s, _)| s.to_string()))
        .filter(|s| s.starts_with("mysql://") && s.len() > "mysql://".len())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306".into());
    let mut a = Args {
        minutes: 1.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        store: "sqlite".into(),
        mysql_url: server,
        bin: PathBuf::from("target/debug/wxpay_functions"),
        instances: 3,
        workers: 6,
        private_mariadb: false,
        cluster: Vec::new(),
        node_script: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--minutes" => {
                a.minutes = value("--minutes")?
                    .parse()
                    .ok()
                    .filter(|m: &f64| *m > 0.0 && *m <= 24.0 * 60.0)
                    .ok_or("--minutes must be a number of minutes above 0")?
            }
            "--seed" => {
                a.seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed must be a whole number")?
            }
            "--store" => {
                a.store = value("--store")?;
                if a.store != "sqlite" && a.store != "mysql" {
                    return Err("--store must be sqlite or mysql".into());
                }
            }
            "--mysql-url" => a.mysql_url = value("--mysql-url")?.trim_end_matches('/').to_string(),
            "--private-mariadb" => a.private_mariadb = true,
            "--cluster-urls" => {
                a.cluster = value("--cluster-urls")?
                    .split(',')
                    .map(|u| server_of(u.trim()))
                    .filter(|u| !u.is_empty())
                    .collect()
            }
            "--restart-nodes" => a.node_script = Some(PathBuf::from(value("--restart-nodes")?)),
            "--bin" => a.bin = PathBuf::from(value("--bin")?),
            "--instances" => {
                a.instances = value("--instances")?
                    .parse()
                    .ok()
                    .filter(|n| (3..=16).contains(n))
                    .ok_or("--instances must be 3 to 16")?
            }
            "--workers" => {
                a.workers = value("--workers")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("--workers must be 1 to 64")?
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if !a.cluster.is_empty() {
        if a.store != "mysql" || a.private_mariadb {
            return Err(
                "--cluster-urls goes with --store mysql (and not --private-mariadb)".into(),
            );
        }
        a.mysql_url = a.cluster[0].clone();
    }
    if a.node_script.is_some() && a.cluster.is_empty() {
        return Err("--restart-nodes goes with --cluster-urls".into());
    }
    if a.private_mariadb && a.store != "mysql" {
        return Err("--private-mariadb goes with --store mysql".into());
    }
    Ok(Some(a))
}

/// The command that runs this campaign again.
pub fn replay(args: &Args) -> String {
    format!(
        "wxpay-chaos --seed {} --minutes {} --store {}{}{}{}",
        args.seed,
        args.minutes,
        args.store,
        if args.private_mariadb {
            " --private-mariadb"
        } else {
            ""
        },
        if args.cluster.is_empty() {
            String::new()
        } else {
            format!(" --cluster-urls {}", args.cluster.join(","))
        },
        args.node_script
            .as_ref()
            .map(|p| format!(" --restart-nodes {}", p.display()))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn a_node_url_loses_its_database_and_parameters() {
        assert_eq!(
            server_of("mysql://root@127.0.0.1:4306/test?ssl-mode=DISABLED"),
            "mysql://root@127.0.0.1:4306"
        );
        assert_eq!(
            server_of("mysql://root@127.0.0.1:4307"),
            "mysql://root@127.0.0.1:4307"
        );
    }
}
