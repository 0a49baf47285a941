//! Numbering a dataset's classes as another class list (a checkpoint's) by name.

use super::Dataset;

impl Dataset {
    /// Renumbers the labels so that they index `classes` (a checkpoint's class list) by
    /// name, whatever the order of either; a class of `classes` that the data lacks has no
    /// images. Errs with the data's classes that `classes` lacks, changing nothing.
    pub fn relabel(&mut self, classes: &[String]) -> Result<(), Vec<String>> {
        let to: Vec<Option<usize>> = self
            .classes
            .iter()
            .map(|c| classes.iter().position(|k| k == c))
            .collect();
        let unknown: Vec<String> = self
            .classes
            .iter()
            .zip(&to)
            .filter(|(_, t)| t.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let to: Vec<usize> = to.into_iter().flatten().collect();
        for s in self
            .train
            .iter_mut()
            .chain(&mut self.test)
            .chain(&mut self.val)
        {
            s.label = to[s.label];
        }
        let mut counts = vec![0; classes.len()];
        for (&k, &n) in to.iter().zip(&self.original_train_counts) {
            counts[k] = n;
        }
        self.original_train_counts = counts;
        self.classes = classes.to_vec();
        Ok(())
    }
}
