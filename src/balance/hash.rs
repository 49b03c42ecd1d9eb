//! Consistent hashing of client addresses onto instances (`ip_hash`).
//!
//! tidegate uses Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016): each instance fills a lookup
//! table of prime size `M` by walking its own permutation of the slots, taking
//! turns until every slot is owned. A pick hashes the client address to one
//! slot, so it costs one hash and one load whatever the number of instances,
//! where rendezvous hashing would score every instance. Adding or removing one
//! instance of `n` moves about `1/n` of the slots, and so of the clients.
//!
//! The table is built when an instance table is published, never on the
//! request path. A client whose instance is not eligible (unhealthy, draining)
//! walks forward to the next slot owned by an eligible instance, so only the
//! clients of that instance move, and they move back when it recovers.

/// Table sizes (primes) and the largest pool each serves with at least 64
/// slots per instance. The size must not change when an instance joins or
/// leaves, or every client would move; it changes only when a pool crosses a
/// tier, which remaps everything once.
// TODO: crossing a tier (64 or 1024 instances) remaps all clients once; a pool
// that hovers at a boundary would pay it repeatedly. Pinning the tier per
// service after the first build would avoid that.
const TIERS: [(usize, usize); 3] = [(4_099, 64), (65_537, 1_024), (1_048_573, usize::MAX)];
/// Owner of a slot not yet filled while building.
const EMPTY: u32 = u32::MAX;

/// The splitmix64 finaliser: a fast, well-mixed 64-bit permutation.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of bytes (FNV-1a, then mixed), the same in every process.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// A stable hash of a client address, so a client keeps its instance across restarts.
#[inline]
pub fn hash_ip(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => mix64(u64::from(u32::from(v4))),
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            mix64((bits >> 64) as u64 ^ mix64(bits as u64))
        }
    }
}

/// A Maglev lookup table: the owner of each slot, as an index into the instance table.
#[derive(Debug, Default)]
pub struct Maglev {
    slots: Slots,
}

/// Slot owners, two bytes each while the pool allows it, so a table of 1,024
/// instances (65,537 slots) takes 128 KiB of cache rather than 256.
#[derive(Debug)]
enum Slots {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Default for Slots {
    fn default() -> Self {
        Slots::Narrow(Vec::new())
    }
}

impl Maglev {
    /// Builds the table for instances with these stable names, in table order.
    pub fn build<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let n = names.len();
        if n == 0 {
            return Self::default();
        }
        let m = TIERS
            .iter()
            .find(|(_, most)| n <= *most)
            .map_or(TIERS[2].0, |(size, _)| *size) as u64;
        let walks: Vec<(u64, u64)> = names
            .map(|name| {
                let offset = hash_bytes(0x6d61_676c_6576, name.as_bytes()) % m;
                let skip = hash_bytes(0x736b_6970, name.as_bytes()) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut slots = vec![EMPTY; m as usize];
        let mut next = vec![0u64; n];
        let mut filled = 0usize;
        'fill: loop {
            for (i, (offset, skip)) in walks.iter().enumerate() {
                let mut slot = ((offset + next[i] * skip) % m) as usize;
                while slots[slot] != EMPTY {
                    next[i] += 1;
                    slot = ((offset + next[i] * skip) % m) as usize;
                }
                slots[slot] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == slots.len() {
                    break 'fill;
                }
            }
        }
        let slots = match u16::try_from(n) {
            Ok(_) => Slots::Narrow(slots.into_iter().map(|s| s as u16).collect()),
            Err(_) => Slots::Wide(slots),
        };
        Self { slots }
    }

    /// Number of slots (a prime), 0 for an empty table.
    pub fn len(&self) -> usize {
        match &self.slots {
            Slots::Narrow(s) => s.len(),
            Slots::Wide(s) => s.len(),
        }
    }

    /// Whether the table has no slot (no instance).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first slot a hash lands on, by multiply-shift rather than modulo.
    #[inline]
    pub fn slot_of(&self, hash: u64) -> usize {
        (((hash >> 32) * self.len() as u64) >> 32) as usize
    }

    /// The instance owning `slot`, wrapping around the end of the table.
    #[inline]
    pub fn owner(&self, slot: usize) -> usize {
        let len = self.len();
        let slot = if slot >= len { slot - len } else { slot };
        match &self.slots {
            Slots::Narrow(s) => usize::from(s[slot]),
            Slots::Wide(s) => s[slot] as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn every_instance_owns_a_near_equal_share_of_slots() {
        let names = names(8);
        let maglev = Maglev::build(names.iter().map(String::as_str));
        let mut owned = [0usize; 8];
        for slot in 0..maglev.len() {
            owned[maglev.owner(slot)] += 1;
        }
        let ideal = maglev.len() / 8;
        for (i, count) in owned.iter().enumerate() {
            assert!(
                count.abs_diff(ideal) <= 1,
                "instance {i} owns {count} slots, ideal {ideal}: Maglev balances within one slot"
            );
        }
    }

    #[test]
    fn table_sizes_are_prime_and_give_each_instance_64_slots() {
        let is_prime = |n: usize| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
        for (size, most) in TIERS {
            assert!(is_prime(size), "{size} is prime");
            assert!(
                most == usize::MAX || size >= most * 64,
                "{size} slots for {most} instances"
            );
        }
        let names = names(100);
        let maglev = Maglev::build(names.iter().map(String::as_str));
        assert_eq!(maglev.len(), 65_537, "a pool of 100 uses the second tier");
    }
}
