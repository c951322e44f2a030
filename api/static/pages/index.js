// The dashboard's pages, in menu order. A page is a module whose default export has:
//   id       the first part of its hash route (#/id/...)
//   title    its menu entry (none: reached only by links, like one case)
//   routes   API paths (as in /openapi.json) it needs: without them it is hidden
//   anyRoute instead: shown when any of these exist (sections hide one by one)
//   knownAt  false when its API does not answer known_at
//   render(element, route, {stillWanted})   fills the element; route = {page, args, params}
import caseView from "./case.js";
import controls from "./controls.js";
import network from "./network.js";
import overview from "./overview.js";
import quality from "./quality.js";

export const PAGES = [overview, controls, quality, network, caseView];
