"""A stand-in for the ``mlflow`` package: only what the iris entry script imports
(``mlflow.sklearn.load_model``), so the test needs neither mlflow nor scikit-learn."""
