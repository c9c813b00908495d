"""Reading results back and studying them: the results grid, device cost per task and
language, language gaps (paired bootstrap), model cost summaries and Pareto fronts, quantization
studies. Pure functions over store records; nothing here runs a model.
"""
