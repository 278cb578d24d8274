"""What the command line shows: walks, buddy lists, pictures, plots, narrations, quizzes, the console."""
