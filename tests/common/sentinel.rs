//! A Redis primary, its replica and three sentinels, each a container on a private Docker
//! network of its own (from the same image as [`super::TestRedis`]), to fail over for real: the
//! primary can be SIGKILLed and started again, or cut off from the sentinels and the replica
//! (iptables on the Docker bridge) while the service still reaches it.

use std::{process::Stdio, time::Duration};

use bb8_redis::redis::{self, aio::MultiplexedConnection};

use super::{eventually, redis::DEFAULT_IMAGE};

/// The master's name the sentinels watch.
pub const MASTER: &str = "mymaster";

/// One container, by name and address on the network.
pub struct Node {
    pub name: String,
    pub ip: String,
}

/// The cluster; everything is removed when it is dropped.
pub struct SentinelCluster {
    network: String,
    pub primary: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
    /// iptables rules in force (to delete at the end).
    cuts: Vec<Vec<String>>,
}

fn image() -> String {
    std::env::var("TASK_TEST_REDIS_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned())
}

async fn docker(args: &[&str]) -> String {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A connection to `ip:port`, if one can be made within 2 s.
pub async fn connect(ip: &str, port: u16) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{ip}:{port}")).ok()?;
    tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

impl SentinelCluster {
    /// Starts it and waits until the sentinels know the primary, its replica and each other.
    /// Both data nodes refuse writes while no replica follows within 2 s
    /// (`min-replicas-to-write 1`, as the compose stack and the docs set), and fsync each write.
    pub async fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let network = format!("task-sentinel-{}", &id[..8]);
        // Fixed addresses, so that a node started again keeps its own.
        let mut subnet = None;
        for attempt in 0..20u8 {
            let octet = 16
                + (u8::from_str_radix(&id[..2], 16).unwrap_or(0) as usize + attempt as usize * 37)
                    % 224;
            let candidate = format!("10.213.{octet}");
            let created = tokio::process::Command::new("docker")
                .args([
                    "network",
                    "create",
                    "--subnet",
                    &format!("{candidate}.0/24"),
                    &network,
                ])
                .output()
                .await
                .expect("docker runs");
            if created.status.success() {
                subnet = Some(candidate);
                break;
            }
        }
        let subnet = subnet.expect("a free /24 for the test network");
        let image = image();
        let run = async |name: &str, ip: &str, server: &[&str]| {
            let mut args = vec![
                "run",
                "-d",
                "--network",
                &network,
                "--ip",
                ip,
                "--name",
                name,
                &image,
            ];
            args.extend(server);
            docker(&args).await;
            Node {
                name: name.to_owned(),
                ip: ip.to_owned(),
            }
        };
        let data = [
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "2",
        ];
        let primary_ip = format!("{subnet}.10");
        let primary = run(&format!("{network}-primary"), &primary_ip, &data).await;
        let mut replica_args = data.to_vec();
        replica_args.extend(["--replicaof", &primary_ip, "6379"]);
        let replica = run(
            &format!("{network}-replica"),
            &format!("{subnet}.11"),
            &replica_args,
        )
        .await;
        let conf = format!(
            "port 26379\nsentinel monitor {MASTER} {primary_ip} 6379 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 4000\nsentinel parallel-syncs {MASTER} 1\n"
        );
        let conf_file = std::env::temp_dir().join(format!("{network}-sentinel.conf"));
        std::fs::write(&conf_file, conf).unwrap();
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let name = format!("{network}-sentinel-{i}");
            let ip = format!("{subnet}.{}", 20 + i);
            docker(&[
                "create",
                "--network",
                &network,
                "--ip",
                &ip,
                "--name",
                &name,
                &image,
                "redis-server",
                "/tmp/sentinel.conf",
                "--sentinel",
            ])
            .await;
            docker(&[
                "cp",
                &conf_file.display().to_string(),
                &format!("{name}:/tmp/sentinel.conf"),
            ])
            .await;
            docker(&["start", &name]).await;
            sentinels.push(Node { ip, name });
        }
        let _ = std::fs::remove_file(&conf_file);
        let cluster = Self {
            network,
            primary,
            replica,
            sentinels,
            cuts: Vec::new(),
        };
        cluster.wait_until_watched().await;
        cluster
    }

    /// `REDIS_SENTINELS` for the service.
    pub fn sentinels_var(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("{}:26379", s.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The service's variables for this cluster.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("REDIS_SENTINELS".into(), self.sentinels_var()),
            ("REDIS_SENTINEL_MASTER".into(), MASTER.into()),
        ]
    }

    /// The primary's address the sentinels give now.
    pub async fn named_primary(&self) -> Option<String> {
        let mut conn = connect(&self.sentinels[0].ip, 26379).await?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut conn)
            .await
            .ok()?;
        addr.map(|(ip, _)| ip)
    }

    async fn wait_until_watched(&self) {
        eventually(
            Duration::from_secs(60),
            "the sentinels to watch the primary and its replica",
            || async {
                for sentinel in &self.sentinels {
                    let mut conn = connect(&sentinel.ip, 26379).await?;
                    let master: Vec<String> = redis::cmd("SENTINEL")
                        .arg("master")
                        .arg(MASTER)
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    let field = |name: &str| {
                        master
                            .chunks(2)
                            .find(|kv| kv[0] == name)
                            .map(|kv| kv[1].clone())
                            .unwrap_or_default()
                    };
                    if field("num-slaves") != "1" || field("num-other-sentinels") != "2" {
                        return None;
                    }
                }
                let mut primary = connect(&self.primary.ip, 6379).await?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut primary)
                    .await
                    .ok()?;
                info.contains("connected_slaves:1").then_some(())
            },
        )
        .await;
    }

    /// SIGKILLs the primary.
    pub async fn kill_primary(&self) {
        docker(&["kill", "-s", "KILL", &self.primary.name]).await;
    }

    /// Starts the old primary again (the sentinels make it a replica of the new one); waits
    /// until it follows.
    pub async fn restart_old_primary(&self) {
        docker(&["start", &self.primary.name]).await;
        self.wait_until_old_primary_follows().await;
    }

    /// Cuts the primary off from the sentinels and the replica, both ways; the host (the
    /// service) still reaches it.
    pub async fn partition_primary(&mut self) {
        let others: Vec<String> = self
            .sentinels
            .iter()
            .chain([&self.replica])
            .map(|n| n.ip.clone())
            .collect();
        for other in others {
            for (from, to) in [(&self.primary.ip, &other), (&other, &self.primary.ip)] {
                let rule = vec![
                    "DOCKER-USER".to_owned(),
                    "-s".to_owned(),
                    from.clone(),
                    "-d".to_owned(),
                    to.clone(),
                    "-j".to_owned(),
                    "DROP".to_owned(),
                ];
                iptables("-I", &rule).await;
                self.cuts.push(rule);
            }
        }
    }

    /// Ends the partition; waits until the old primary follows the new one.
    pub async fn heal(&mut self) {
        for rule in std::mem::take(&mut self.cuts) {
            iptables("-D", &rule).await;
        }
        self.wait_until_old_primary_follows().await;
    }
}

impl SentinelCluster {
    /// Waits until the old primary is a replica in sync with the new one.
    async fn wait_until_old_primary_follows(&self) {
        eventually(
            Duration::from_secs(60),
            "the old primary to follow the new one as a replica",
            || async {
                let mut conn = connect(&self.primary.ip, 6379).await?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (info.contains("role:slave") && info.contains("master_link_status:up"))
                    .then_some(())
            },
        )
        .await;
    }
}

async fn iptables(action: &str, rule: &[String]) {
    let out = tokio::process::Command::new("iptables")
        .arg(action)
        .args(rule)
        .output()
        .await
        .expect("iptables runs (the partition test needs it, and root)");
    assert!(
        out.status.success(),
        "iptables {action} {rule:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        for rule in &self.cuts {
            let _ = std::process::Command::new("iptables")
                .arg("-D")
                .args(rule)
                .output();
        }
        let names: Vec<&str> = [&self.primary, &self.replica]
            .into_iter()
            .chain(&self.sentinels)
            .map(|n| n.name.as_str())
            .collect();
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&names)
            .output();
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}
