// The published app was written for React 0.12 globals (React.createClass, React.render,
// React.addons.classSet, director's Router). This maps them onto React 18 from npm, and adds the
// error boundary an app on React 16+ wraps its root in (it logs what it catches with console.error).
import * as ReactModule from "react";
import ReactDOM from "react-dom";
import createReactClass from "create-react-class";
import { Router } from "director/build/director.js";

function classSet(classes) {
  return Object.keys(classes).filter((name) => classes[name]).join(" ");
}

class ErrorBoundary extends ReactModule.Component {
  constructor(props) {
    super(props);
    this.state = { failed: false };
  }

  static getDerivedStateFromError() {
    return { failed: true };
  }

  componentDidCatch(error) {
    console.error(error);
  }

  render() {
    if (this.state.failed) {
      return ReactModule.createElement("p", { className: "crashed" }, "Something went wrong.");
    }
    return this.props.children;
  }
}

window.React = Object.assign({}, ReactModule, { createClass: createReactClass, addons: { classSet } });
window.ReactDOM = ReactDOM;
window.Router = Router;
window.ErrorBoundary = ErrorBoundary;
