#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The services `scripts/test` provides are the real thing, speaking their own protocols.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turnstone_tests::services::{authority, database_url, redis_url};

#[tokio::test]
async fn redis_answers_ping_and_reports_its_version() {
    let url = redis_url().expect("redis configured");
    let mut conn = TcpStream::connect(authority(&url)).await.unwrap();
    conn.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut buf = [0_u8; 7];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"+PONG\r\n");

    conn.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .await
        .unwrap();
    let mut info = vec![0_u8; 4096];
    let n = conn.read(&mut info).await.unwrap();
    let info = String::from_utf8_lossy(&info[..n]);
    assert!(info.contains("redis_version:"), "{info}");
}

#[tokio::test]
async fn postgresql_answers_the_ssl_negotiation() {
    let url = database_url().expect("postgresql configured");
    let mut conn = TcpStream::connect(authority(&url)).await.unwrap();
    // SSLRequest: length 8, code 80877103. A PostgreSQL server answers 'S' or 'N'.
    conn.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut answer = [0_u8; 1];
    conn.read_exact(&mut answer).await.unwrap();
    assert!(matches!(&answer, b"S" | b"N"), "{answer:?}");
}
