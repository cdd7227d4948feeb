"""Structure search (genetic algorithm, convex hull, voltage profile); see the Search issue."""
