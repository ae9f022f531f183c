//! The weighted-quorum time of a set of votes (aware-model.md §4): votes are
//! polled in the order of an array binary min-heap on arrival time, offered
//! in sender order, exactly as Java's `PriorityQueue` orders them (tied
//! arrivals do not come out in sender order), and their weights summed in
//! doubles until the sum reaches Q.

/// A reusable min-heap of sender indices keyed on arrival time.
pub(crate) struct Heap {
    slots: Vec<usize>,
}

impl Heap {
    pub fn with_capacity(n: usize) -> Self {
        Heap {
            slots: Vec::with_capacity(n),
        }
    }

    /// The arrival time of the vote that brings the double sum of polled
    /// weights to `q` (None if all votes together do not).
    pub fn quorum_time(&mut self, arrival: &[i64], weight: &[f64], q: f64) -> Option<i64> {
        self.slots.clear();
        for j in 0..arrival.len() {
            self.offer(j, arrival);
        }
        let mut sum = 0.0;
        while sum < q {
            let j = self.poll(arrival)?;
            sum += weight[j];
            if sum >= q {
                return Some(arrival[j]);
            }
        }
        None
    }

    /// For each receiver i in 0..n, the quorum time of the votes of every
    /// sender j arriving at `arrival(j, i)`.
    pub fn quorum_times(
        &mut self,
        n: usize,
        weight: &[f64],
        q: f64,
        arrival: impl Fn(usize, usize) -> i64,
    ) -> Option<Vec<i64>> {
        let mut at = vec![0i64; n];
        (0..n)
            .map(|i| {
                for (j, a) in at.iter_mut().enumerate() {
                    *a = arrival(j, i);
                }
                self.quorum_time(&at, weight, q)
            })
            .collect()
    }

    /// Sift up from the first free slot; equal keys never move up.
    fn offer(&mut self, x: usize, key: &[i64]) {
        let mut s = self.slots.len();
        self.slots.push(x);
        while s > 0 {
            let parent = (s - 1) / 2;
            let e = self.slots[parent];
            if key[x] >= key[e] {
                break;
            }
            self.slots[s] = e;
            s = parent;
        }
        self.slots[s] = x;
    }

    /// Take slot 0; sift the last element down from the root, taking the
    /// right child only when strictly smaller than the left.
    fn poll(&mut self, key: &[i64]) -> Option<usize> {
        let result = *self.slots.first()?;
        let x = self.slots.pop().expect("non-empty");
        let size = self.slots.len();
        if size > 0 {
            let mut s = 0;
            while s < size / 2 {
                let mut c = 2 * s + 1;
                if c + 1 < size && key[self.slots[c]] > key[self.slots[c + 1]] {
                    c += 1;
                }
                if key[x] <= key[self.slots[c]] {
                    break;
                }
                self.slots[s] = self.slots[c];
                s = c;
            }
            self.slots[s] = x;
        }
        Some(result)
    }

    #[cfg(test)]
    pub fn poll_order(keys: &[i64]) -> Vec<usize> {
        let mut h = Heap::with_capacity(keys.len());
        for j in 0..keys.len() {
            h.offer(j, keys);
        }
        std::iter::from_fn(|| h.poll(keys)).collect()
    }
}
