//! A DNS server for the tests: the "real" upstream the sandbox's resolver forwards to. It
//! answers A and AAAA queries from a fixed table and remembers every name it was asked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub struct TestDns {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    option: [String; 2],
}

impl TestDns {
    /// Serves `table` (name -> addresses) on 127.0.0.1 until the test process ends.
    pub fn start(table: &[(&str, &[&str])]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test DNS server");
        let addr = socket.local_addr().expect("its address");
        let table: HashMap<String, Vec<IpAddr>> = table
            .iter()
            .map(|(name, addrs)| {
                (
                    name.to_string(),
                    addrs.iter().map(|a| a.parse().expect("address")).collect(),
                )
            })
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((len, client)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(question) = query.queries.first().cloned() else {
                    continue;
                };
                let name = question.name().to_ascii().trim_end_matches('.').to_string();
                log.lock().expect("log").push(name.clone());
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.metadata.message_type = MessageType::Response;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.queries.push(question.clone());
                match table.get(&name) {
                    None => reply.metadata.response_code = ResponseCode::NXDomain,
                    Some(addrs) => {
                        for ip in addrs {
                            let data = match (ip, question.query_type()) {
                                (IpAddr::V4(v4), RecordType::A) => RData::A((*v4).into()),
                                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA((*v6).into()),
                                _ => continue,
                            };
                            let owner = Name::from_ascii(format!("{name}.")).expect("name");
                            reply.answers.push(Record::from_rdata(owner, 300, data));
                        }
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, client);
                }
            }
        });
        let option = ["--dns-upstream".to_string(), addr.to_string()];
        TestDns {
            addr,
            asked,
            option,
        }
    }

    /// Every name the server was asked, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("log").clone()
    }

    /// `--dns-upstream ADDR` for `cordon run`.
    pub fn option(&self) -> Vec<&str> {
        self.option.iter().map(String::as_str).collect()
    }
}
