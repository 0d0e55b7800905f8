//! The guard's own tests, each against a `redis-server` it starts.

use super::*;

#[test]
fn start_answers_ping() -> io::Result<()> {
    let server = RedisServer::start()?;
    assert_eq!(server.redis_cli(["PING"])?, "PONG");
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/0", server.port())
    );
    assert_eq!(ping_and_pid(&server.endpoint)?, server.pid());
    assert_eq!(server.redis_cli(["CONFIG", "GET", "save"])?, "save");
    assert_eq!(
        server.redis_cli(["CONFIG", "GET", "appendonly"])?,
        "appendonly\nno"
    );
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
    Ok(())
}

#[test]
fn url_works_with_the_redis_crate() -> io::Result<()> {
    for server in [
        RedisServer::start()?,
        RedisServer::builder().unix_socket(true).start()?,
    ] {
        let client = redis::Client::open(server.url()).map_err(io::Error::other)?;
        let mut conn = client.get_connection().map_err(io::Error::other)?;
        let pong: String = redis::cmd("PING")
            .query(&mut conn)
            .map_err(io::Error::other)?;
        assert_eq!(pong, "PONG", "{}", server.url());
    }
    Ok(())
}

#[test]
fn unix_socket_server() -> io::Result<()> {
    let server = RedisServer::builder().unix_socket(true).start()?;
    let socket = server.socket_path().map(Path::to_path_buf);
    assert_eq!(socket, Some(server.dir().join(SOCKET_FILE)));
    assert_eq!(server.port(), 0);
    assert!(
        server.url().starts_with("redis+unix:///"),
        "{}",
        server.url()
    );
    assert_eq!(server.redis_cli(["PING"])?, "PONG");
    assert_eq!(server.redis_cli(["CONFIG", "GET", "port"])?, "port\n0");
    Ok(())
}

#[test]
fn extra_args_override_defaults() -> io::Result<()> {
    let server = RedisServer::builder().arg("--maxmemory", "10mb").start()?;
    assert_eq!(
        server.redis_cli(["CONFIG", "GET", "maxmemory"])?,
        "maxmemory\n10485760"
    );
    Ok(())
}

#[test]
fn acknowledged_write_survives_kill_and_restart() -> io::Result<()> {
    let mut server = RedisServer::builder().appendonly(true).start()?;
    let (port, dir) = (server.port(), server.dir().to_path_buf());
    assert_eq!(
        server.redis_cli(["CONFIG", "GET", "appendfsync"])?,
        "appendfsync\nalways"
    );
    assert_eq!(server.redis_cli(["SET", "k", "before-kill"])?, "OK");
    let old_pid = server.pid();
    server.kill()?;
    assert!(!server.is_running());
    assert!(server.redis_cli(["PING"]).is_err());

    server.restart()?;
    assert_ne!(server.pid(), old_pid);
    assert_eq!((server.port(), server.dir()), (port, dir.as_path()));
    assert_eq!(server.redis_cli(["GET", "k"])?, "before-kill");
    Ok(())
}

#[test]
fn restart_stops_a_running_server_cleanly() -> io::Result<()> {
    let mut server = RedisServer::builder().unix_socket(true).start()?;
    server.redis_cli(["SET", "k", "v"])?;
    server.restart()?;
    assert_eq!(server.redis_cli(["PING"])?, "PONG");
    assert!(
        server.log().contains("Received SIGTERM"),
        "{}",
        server.log()
    );
    Ok(())
}

#[test]
fn new_server_on_a_killed_servers_dir_and_port() -> io::Result<()> {
    let data = TempDir::new()?;
    let first = RedisServer::builder()
        .appendonly(true)
        .dir(data.path())
        .start()?;
    let port = first.port();
    first.redis_cli(["RPUSH", "list", "a", "b"])?;
    drop(first); // SIGKILL

    let second = RedisServer::builder()
        .appendonly(true)
        .dir(data.path())
        .port(port)
        .start()?;
    assert_eq!(second.port(), port);
    assert_eq!(second.redis_cli(["LRANGE", "list", "0", "-1"])?, "a\nb");
    drop(second);
    assert!(data.path().exists(), "a caller-owned dir is not removed");
    Ok(())
}

#[test]
fn pause_and_resume() -> io::Result<()> {
    let mut server = RedisServer::start()?;
    server.pause()?;
    assert_eq!(process_state(server.pid()), Some('T'));
    assert!(
        ping_and_pid(&server.endpoint).is_err(),
        "a paused server must not answer"
    );
    assert!(server.is_running());

    server.resume()?;
    assert_ne!(process_state(server.pid()), Some('T'));
    assert_eq!(server.redis_cli(["PING"])?, "PONG");
    Ok(())
}

#[test]
fn stop_shuts_down_even_a_paused_server() -> io::Result<()> {
    let mut server = RedisServer::start()?;
    server.pause()?;
    server.stop()?;
    assert!(!server.is_running());
    assert_eq!(process_state(server.pid()), None);
    assert!(server.pause().is_err());
    Ok(())
}

#[test]
fn drop_kills_the_process_and_removes_the_dir() -> io::Result<()> {
    let mut server = RedisServer::start()?;
    server.pause()?; // SIGKILL must work on a stopped process too
    let (pid, dir) = (server.pid(), server.dir().to_path_buf());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn taken_port_is_an_error_with_the_log() -> io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let err = RedisServer::builder()
        .port(port)
        .start()
        .err()
        .ok_or_else(|| io::Error::other("started on a taken port"))?;
    let message = err.to_string();
    assert!(message.contains("redis-server exited"), "{message}");
    assert!(message.contains("--- redis-server log"), "{message}");
    assert!(message.contains(&port.to_string()), "{message}");
    Ok(())
}

#[test]
fn bad_option_is_an_error_with_the_output() -> io::Result<()> {
    let err = RedisServer::builder()
        .arg("--no-such-option", "1")
        .start()
        .err()
        .ok_or_else(|| io::Error::other("started with a bad option"))?;
    let message = err.to_string();
    assert!(message.contains("no-such-option"), "{message}");
    Ok(())
}
