//! Cycles in a directed graph: imports between files, `start`s between journeys.

/// The edges that close a cycle, found by a depth-first search from each node in order, with
/// the cycle each closes (node indices, first node repeated at the end). Deterministic: nodes
/// are visited in index order and edges in the order given. Iterative, so any depth is safe.
pub fn cycles(nodes: usize, edges: &[(usize, usize)]) -> Vec<(usize, Vec<usize>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnPath,
        Done,
    }
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    for (index, (from, _)) in edges.iter().enumerate() {
        if let Some(list) = outgoing.get_mut(*from) {
            list.push(index);
        }
    }
    let mut state = vec![State::New; nodes];
    let mut found = Vec::new();
    for start in 0..nodes {
        if state[start] != State::New {
            continue;
        }
        state[start] = State::OnPath;
        // (node, position in its outgoing edges)
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let Some(&edge) = outgoing[node].get(*next) else {
                state[node] = State::Done;
                path.pop();
                continue;
            };
            *next += 1;
            let to = edges[edge].1;
            match state.get(to) {
                Some(State::New) => {
                    state[to] = State::OnPath;
                    path.push((to, 0));
                }
                Some(State::OnPath) => {
                    let first = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[first..].iter().map(|(n, _)| *n).collect();
                    cycle.push(to);
                    found.push((edge, cycle));
                }
                _ => {}
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_once() {
        assert_eq!(cycles(3, &[(0, 1), (1, 2)]), vec![]);
        assert_eq!(
            cycles(3, &[(0, 1), (1, 2), (2, 0)]),
            vec![(2, vec![0, 1, 2, 0])]
        );
        assert_eq!(cycles(1, &[(0, 0)]), vec![(0, vec![0, 0])]);
    }
}
