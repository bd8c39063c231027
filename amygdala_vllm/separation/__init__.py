"""How well directions separate texts: the measures ``reduce`` and ``validate`` both apply.

``reduce --method auto`` ranks candidate methods by these figures in
cross-validation on the train split, and ``validate`` reports them on the
held-out split, so they sit at the bottom, under both stages (pure numpy, no
engine):

- :mod:`.metrics`: AUROC, Cohen's d, the calibrated threshold and accuracy at it;
- :mod:`.specificity`: sibling AUROC, identification, valence dominance;
- :mod:`.schema`: the report Structs :mod:`.specificity` fills.
"""
