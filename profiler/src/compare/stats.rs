//! The tests `tcpprof compare` marks a change significant by: Mann-Whitney U over two runs'
//! per-interval values (throughput, percentiles), exact for small samples, and a conditional
//! binomial test over sample counts (a function's stack samples, failed requests).

/// Two-sided p-value of the Mann-Whitney U test that `a` and `b` come from one distribution.
/// Exact (every arrangement of the ranks counted) up to [`EXACT_UP_TO`] values in all, without
/// ties; else the normal approximation with the tie correction and a continuity correction.
/// `None` when either side is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<f64> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Ranks of the pooled values, ties given their mean rank.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut ties, mut i) = (0.0, Vec::new(), 0);
    while i < pooled.len() {
        let mut j = i;
        while j + 1 < pooled.len() && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += rank * pooled[i..=j].iter().filter(|p| p.1).count() as f64;
        if j > i {
            ties.push((j - i + 1) as f64);
        }
        i = j + 1;
    }
    let u = rank_sum_a - (n1 * (n1 + 1)) as f64 / 2.0;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    if ties.is_empty() && n1 + n2 <= EXACT_UP_TO {
        return Some(exact_two_sided(n1, n2, u));
    }
    let n = n1f + n2f;
    let tie_term: f64 = ties.iter().map(|t| t * t * t - t).sum::<f64>() / (n * (n - 1.0));
    let variance = n1f * n2f / 12.0 * ((n + 1.0) - tie_term);
    if variance <= 0.0 {
        // Every value the same: nothing tells the two apart.
        return Some(1.0);
    }
    let mean = n1f * n2f / 2.0;
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    Some((2.0 * normal_tail(z)).min(1.0))
}

/// Up to this many values in all, the U test counts arrangements exactly.
pub const EXACT_UP_TO: usize = 40;

/// P(|U - mean| >= |u - mean|) when every arrangement of the ranks is equally likely.
fn exact_two_sided(n1: usize, n2: usize, u: f64) -> f64 {
    let dist = u_distribution(n1, n2);
    let total: f64 = dist.iter().sum();
    let mean = (n1 * n2) as f64 / 2.0;
    let distance = (u - mean).abs();
    let tail: f64 = dist
        .iter()
        .enumerate()
        .filter(|(k, _)| (*k as f64 - mean).abs() >= distance - 1e-9)
        .map(|(_, w)| w)
        .sum();
    (tail / total).min(1.0)
}

/// How many arrangements give each U from 0 to n1*n2: f(m, n, k) ways for m values of the first
/// sample and n of the second to make U = k, where the largest of them all is either the first
/// sample's (it beats all n) or the second's: f(m, n, k) = f(m-1, n, k-n) + f(m, n-1, k).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    let max_u = n1 * n2;
    let mut f = vec![vec![vec![0f64; max_u + 1]; n2 + 1]; n1 + 1];
    for m in 0..=n1 {
        for n in 0..=n2 {
            if m == 0 || n == 0 {
                f[m][n][0] = 1.0;
                continue;
            }
            for k in 0..=m * n {
                let first_largest = if k >= n { f[m - 1][n][k - n] } else { 0.0 };
                f[m][n][k] = first_largest + f[m][n - 1][k];
            }
        }
    }
    f[n1][n2].clone()
}

/// Two-sided p-value that `a` events of `a + b` fell on the first side, when each falls there
/// with probability `share` (the first side's share of the exposure: its samples or requests):
/// the binomial test, by the normal approximation with a continuity correction (exact enough
/// for the counts a profile has; `None` with no event or an empty side).
pub fn binomial(a: u64, b: u64, share: f64) -> Option<f64> {
    let n = (a + b) as f64;
    if n == 0.0 || !(share > 0.0 && share < 1.0) {
        return None;
    }
    let mean = n * share;
    let sd = (n * share * (1.0 - share)).sqrt();
    let z = ((a as f64 - mean).abs() - 0.5).max(0.0) / sd;
    Some((2.0 * normal_tail(z)).min(1.0))
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 7.1.26 through erfc; error below
/// 1.5e-7).
pub fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    erfc / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_matches_known_values() {
        // Complete separation of 5 and 5: the exact two-sided p is 2/252.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        assert!((mann_whitney(&a, &b).unwrap() - 2.0 / 252.0).abs() < 1e-12);
        assert!((mann_whitney(&b, &a).unwrap() - 2.0 / 252.0).abs() < 1e-12);
        // Interleaved: no evidence.
        let c = [1.0, 3.0, 5.0, 7.0, 9.0];
        let d = [2.0, 4.0, 6.0, 8.0, 10.0];
        assert!(mann_whitney(&c, &d).unwrap() > 0.5);
        // 1..=20 against 11..=30 (ten ties): U = 50, tie-corrected variance 1365.38, z = 4.0459,
        // p = erfc(z / sqrt 2) = 5.2125e-5 (worked with Python's math.erfc).
        let e: Vec<f64> = (1..=20).map(f64::from).collect();
        let f: Vec<f64> = (11..=30).map(f64::from).collect();
        let p = mann_whitney(&e, &f).unwrap();
        assert!((p - 5.2125e-5).abs() < 1e-7, "{p}");
        // All equal: nothing to tell apart.
        assert_eq!(mann_whitney(&[1.0; 6], &[1.0; 6]), Some(1.0));
        assert_eq!(mann_whitney(&[], &[1.0]), None);
    }

    #[test]
    fn the_u_distribution_counts_every_arrangement() {
        let d = u_distribution(3, 2);
        assert_eq!(d.iter().sum::<f64>(), 10.0);
        assert_eq!(d, vec![1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0]);
    }

    #[test]
    fn binomial_and_normal_tail() {
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-9);
        // 60 of 100 where 50 were expected: z = 1.9, two-sided p about 0.057.
        let p = binomial(60, 40, 0.5).unwrap();
        assert!((p - 0.0574).abs() < 0.002, "{p}");
        assert!(binomial(600, 400, 0.5).unwrap() < 1e-9);
        assert_eq!(binomial(0, 0, 0.5), None);
    }
}
